/*
 * mt_checkpoint_restore: load the newest valid checkpoint (mt_checkpoint_scan) into the state
 * spans. The scan has validated the payload's CRC before the first span byte is overwritten, so a
 * torn or foreign checkpoint never touches the state.
 */
#include <stddef.h>

#include "mt_flash.h"

int32_t mt_checkpoint_restore(const mt_flash *flash, uint32_t model_id, const mt_state_span *spans, int32_t count,
                              mt_checkpoint_info *info)
{
    mt_checkpoint_info local;
    uint32_t payload = 0, at, unit, slot_pages;
    int32_t k, st;

    if (info == NULL) {
        info = &local;
    }
    if (spans == NULL || count < 0) {
        return MT_CKPT_ERR_PARAM;
    }
    for (k = 0; k < count; ++k) {
        if (spans[k].data == NULL && spans[k].bytes > 0) {
            return MT_CKPT_ERR_PARAM;
        }
        payload += spans[k].bytes;
    }
    st = mt_checkpoint_scan(flash, model_id, payload, info);
    if (st != MT_CKPT_OK) {
        return st;
    }
    if (info->newest < 0) {
        return MT_CKPT_EMPTY;
    }
    unit = flash->write_unit;
    slot_pages = mt_checkpoint_slot_pages(flash, payload);
    at = (uint32_t)info->newest * slot_pages * flash->page_size + (MT_CHECKPOINT_HEADER_BYTES + unit - 1u) / unit * unit;
    for (k = 0; k < count; ++k) {
        if (spans[k].bytes > 0 && flash->read(flash->ctx, at, (uint8_t *)spans[k].data, spans[k].bytes) != 0) {
            return MT_CKPT_ERR_FLASH;
        }
        at += spans[k].bytes;
    }
    return MT_CKPT_OK;
}
