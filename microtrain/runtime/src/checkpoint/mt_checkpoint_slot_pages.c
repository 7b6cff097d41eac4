/*
 * mt_checkpoint_slot_pages: the size of one checkpoint slot in erase pages (mt_flash.h), and the
 * one place that checks a driver's geometry: write_unit a power of two in 1..256 dividing
 * page_size.
 */
#include <stddef.h>

#include "mt_flash.h"

uint32_t mt_checkpoint_slot_pages(const mt_flash *flash, uint32_t payload_bytes)
{
    uint32_t unit, header_area, total;

    if (flash == NULL) {
        return 0;
    }
    unit = flash->write_unit;
    if (unit == 0 || unit > MT_FLASH_MAX_WRITE_UNIT || (unit & (unit - 1u)) != 0 || flash->page_size < unit ||
        flash->page_size % unit != 0) {
        return 0;
    }
    header_area = (MT_CHECKPOINT_HEADER_BYTES + unit - 1u) / unit * unit;
    if (payload_bytes > 0xFFFFFFFFu - header_area - flash->page_size) {
        return 0; /* would overflow: no flash region is that large */
    }
    total = header_area + payload_bytes;
    return (total + flash->page_size - 1u) / flash->page_size;
}
