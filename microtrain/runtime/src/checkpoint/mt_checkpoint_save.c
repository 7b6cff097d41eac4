/*
 * mt_checkpoint_save: write the state spans as a new checkpoint into the slot that does not hold
 * the newest valid one (mt_flash.h): erase its pages, program the payload in ascending write
 * units, then the header, whose last unit commits the checkpoint; finally validate the slot by
 * reading it back. Bytes pass through one write unit of stack, so spans of any size and alignment
 * become whole, aligned program calls.
 */
#include <stddef.h>
#include <string.h>

#include "mt_flash.h"

typedef struct {
    const mt_flash *flash;
    uint8_t unit[MT_FLASH_MAX_WRITE_UNIT];
    uint32_t fill;    /* bytes in unit */
    uint32_t offset;  /* region offset of the unit being filled */
    mt_checkpoint_info *info;
} mt_nn_writer;

static int32_t mt_nn_flush(mt_nn_writer *w)
{
    const uint32_t n = w->flash->write_unit;
    if (w->fill == 0) {
        return MT_CKPT_OK;
    }
    memset(w->unit + w->fill, 0xFF, n - w->fill); /* padding leaves the erased bytes as they are */
    if (w->flash->program(w->flash->ctx, w->offset, w->unit, n) != 0) {
        return MT_CKPT_ERR_FLASH;
    }
    w->info->bytes_programmed += n;
    w->offset += n;
    w->fill = 0;
    return MT_CKPT_OK;
}

static int32_t mt_nn_write(mt_nn_writer *w, const uint8_t *data, uint32_t len)
{
    while (len > 0) {
        uint32_t n = w->flash->write_unit - w->fill;
        if (n > len) {
            n = len;
        }
        memcpy(w->unit + w->fill, data, n);
        w->fill += n;
        data += n;
        len -= n;
        if (w->fill == w->flash->write_unit && mt_nn_flush(w) != MT_CKPT_OK) {
            return MT_CKPT_ERR_FLASH;
        }
    }
    return MT_CKPT_OK;
}

static void mt_nn_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

int32_t mt_checkpoint_save(const mt_flash *flash, uint32_t model_id, const mt_state_span *spans, int32_t count,
                           mt_checkpoint_info *info)
{
    mt_checkpoint_info local;
    mt_nn_writer w;
    uint8_t header[MT_CHECKPOINT_HEADER_BYTES];
    uint32_t payload = 0, crc = 0, slot, slot_pages, page, sequence, unit, header_area;
    int32_t k, st;

    if (info == NULL) {
        info = &local;
    }
    if (spans == NULL || count < 0 || flash == NULL || flash->erase_page == NULL || flash->program == NULL) {
        return MT_CKPT_ERR_PARAM;
    }
    for (k = 0; k < count; ++k) {
        if (spans[k].data == NULL && spans[k].bytes > 0) {
            return MT_CKPT_ERR_PARAM;
        }
        payload += spans[k].bytes;
        crc = mt_crc32(crc, (const uint8_t *)spans[k].data, spans[k].bytes);
    }
    st = mt_checkpoint_scan(flash, model_id, payload, info);
    if (st != MT_CKPT_OK) {
        return st;
    }
    slot = info->newest == 0 ? 1u : 0u;
    sequence = info->newest >= 0 ? info->sequence[info->newest] + 1u : 1u;
    slot_pages = mt_checkpoint_slot_pages(flash, payload);
    unit = flash->write_unit;
    header_area = (MT_CHECKPOINT_HEADER_BYTES + unit - 1u) / unit * unit;

    /* 1. erase: the old header goes first (page 0 of the slot), so the slot is invalid from here on */
    for (page = 0; page < slot_pages; ++page) {
        if (flash->erase_page(flash->ctx, slot * slot_pages + page) != 0) {
            return MT_CKPT_ERR_FLASH;
        }
        info->pages_erased++;
    }
    /* 2. payload, after the header area */
    w.flash = flash;
    w.fill = 0;
    w.offset = slot * slot_pages * flash->page_size + header_area;
    w.info = info;
    for (k = 0; k < count; ++k) {
        if (mt_nn_write(&w, (const uint8_t *)spans[k].data, spans[k].bytes) != MT_CKPT_OK) {
            return MT_CKPT_ERR_FLASH;
        }
    }
    if (mt_nn_flush(&w) != MT_CKPT_OK) {
        return MT_CKPT_ERR_FLASH;
    }
    /* 3. the header, last: until its final unit is programmed the slot does not validate */
    mt_nn_put32(header, MT_CHECKPOINT_MAGIC);
    mt_nn_put32(header + 4, MT_CHECKPOINT_VERSION | (MT_CHECKPOINT_HEADER_BYTES << 16));
    mt_nn_put32(header + 8, model_id);
    mt_nn_put32(header + 12, sequence);
    mt_nn_put32(header + 16, payload);
    mt_nn_put32(header + 20, crc);
    mt_nn_put32(header + 24, 0);
    mt_nn_put32(header + 28, mt_crc32(0, header, 28));
    w.offset = slot * slot_pages * flash->page_size;
    if (mt_nn_write(&w, header, MT_CHECKPOINT_HEADER_BYTES) != MT_CKPT_OK || mt_nn_flush(&w) != MT_CKPT_OK) {
        return MT_CKPT_ERR_FLASH;
    }
    /* 4. read back: a program the chip did not carry out is an error, not a silent loss */
    {
        const uint32_t programmed = info->bytes_programmed, erased = info->pages_erased;
        st = mt_checkpoint_scan(flash, model_id, payload, info);
        info->bytes_programmed = programmed;
        info->pages_erased = erased;
        if (st != MT_CKPT_OK) {
            return st;
        }
        if (info->status[slot] != MT_CKPT_OK || info->newest != (int32_t)slot) {
            return MT_CKPT_ERR_FLASH;
        }
    }
    info->written_slot = (int32_t)slot;
    info->written_sequence = sequence;
    return MT_CKPT_OK;
}
