/*
 * mt_checkpoint_scan: validate both checkpoint slots (the order of tests is mt_flash.h's) without
 * writing anything. The payload CRC is computed from 64-byte reads, so validating needs no buffer
 * the size of the state.
 */
#include <stddef.h>
#include <string.h>

#include "mt_flash.h"

static uint32_t mt_nn_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* The status of one slot; its header fields go to info. Negative: a driver error. */
static int32_t mt_nn_check_slot(const mt_flash *flash, uint32_t slot, uint32_t slot_pages, uint32_t model_id,
                                uint32_t payload_bytes, mt_checkpoint_info *info)
{
    uint8_t header[MT_CHECKPOINT_HEADER_BYTES];
    uint8_t chunk[64];
    const uint32_t base = slot * slot_pages * flash->page_size;
    const uint32_t unit = flash->write_unit;
    const uint32_t header_area = (MT_CHECKPOINT_HEADER_BYTES + unit - 1u) / unit * unit;
    uint32_t i, crc, left, at, stored;
    int erased = 1;

    if (flash->read(flash->ctx, base, header, MT_CHECKPOINT_HEADER_BYTES) != 0) {
        return MT_CKPT_ERR_FLASH;
    }
    for (i = 0; i < MT_CHECKPOINT_HEADER_BYTES; ++i) {
        erased &= header[i] == 0xFFu;
    }
    if (erased) {
        return MT_CKPT_EMPTY;
    }
    if (mt_nn_le32(header) != MT_CHECKPOINT_MAGIC ||
        mt_nn_le32(header + 4) != (MT_CHECKPOINT_VERSION | (MT_CHECKPOINT_HEADER_BYTES << 16)) ||
        mt_nn_le32(header + 28) != mt_crc32(0, header, 28)) {
        return MT_CKPT_TORN;
    }
    info->model_id[slot] = mt_nn_le32(header + 8);
    info->sequence[slot] = mt_nn_le32(header + 12);
    info->payload_bytes[slot] = stored = mt_nn_le32(header + 16);
    if (info->model_id[slot] != model_id) {
        return MT_CKPT_FOREIGN;
    }
    if (stored != payload_bytes || stored > slot_pages * flash->page_size - header_area) {
        return MT_CKPT_SIZE;
    }
    crc = 0;
    at = base + header_area;
    for (left = stored; left > 0;) {
        const uint32_t n = left < sizeof chunk ? left : (uint32_t)sizeof chunk;
        if (flash->read(flash->ctx, at, chunk, n) != 0) {
            return MT_CKPT_ERR_FLASH;
        }
        crc = mt_crc32(crc, chunk, n);
        at += n;
        left -= n;
    }
    return crc == mt_nn_le32(header + 20) ? MT_CKPT_OK : MT_CKPT_BAD_CRC;
}

int32_t mt_checkpoint_scan(const mt_flash *flash, uint32_t model_id, uint32_t payload_bytes,
                           mt_checkpoint_info *info)
{
    uint32_t slot_pages, slot;

    if (flash == NULL || info == NULL || flash->read == NULL) {
        return MT_CKPT_ERR_PARAM;
    }
    slot_pages = mt_checkpoint_slot_pages(flash, payload_bytes);
    if (slot_pages == 0) {
        return MT_CKPT_ERR_PARAM;
    }
    if (flash->pages / 2u < slot_pages) {
        return MT_CKPT_ERR_SPACE;
    }
    memset(info, 0, sizeof *info);
    info->newest = -1;
    info->written_slot = -1;
    for (slot = 0; slot < 2u; ++slot) {
        const int32_t st = mt_nn_check_slot(flash, slot, slot_pages, model_id, payload_bytes, info);
        if (st < 0) {
            return st;
        }
        info->status[slot] = st;
        if (st == MT_CKPT_OK &&
            (info->newest < 0 || (int32_t)(info->sequence[slot] - info->sequence[info->newest]) > 0)) {
            info->newest = (int32_t)slot;
        }
    }
    return MT_CKPT_OK;
}
