/*
 * mt_flash.h: checkpoints of the trained state in flash, through a driver the user writes.
 *
 * THE DRIVER (mt_flash): three callbacks over a region of `pages` erase pages of `page_size`
 * bytes, addressed by byte offsets from the start of the region (the driver maps them to the
 * chip's addresses). The checkpoint code assumes exactly these flash semantics:
 *   erase_page(ctx, page)            every byte of page `page` (0 <= page < pages) reads 0xFF
 *   program(ctx, offset, data, len)  flash[offset + i] &= data[i] for i < len: programming only
 *                                    clears bits. offset and len are multiples of write_unit, the
 *                                    range lies inside one page, and that page was erased since it
 *                                    was last programmed (each byte is programmed once per erase)
 *   read(ctx, offset, data, len)     copies any range inside the region
 * Each returns 0 on success and anything else on failure. A power cut during an erase or a
 * program may leave that page in any state; every other page keeps its contents.
 *
 * THE CHECKPOINT: the region holds two slots of mt_checkpoint_slot_pages() pages each (slot 0 at
 * page 0, slot 1 right after it). A slot is a 32-byte header, padded with 0xFF to a whole number
 * of write units, followed by the payload: the bytes of the state spans, back to back, in the
 * device's byte order. The header (all fields little-endian uint32 unless noted):
 *     0  magic 0x4B43544D ("MTCK")     4  version (uint16, 1)   6  header bytes (uint16, 32)
 *     8  model id                     12  sequence number      16  payload bytes
 *    20  CRC-32 of the payload        24  reserved (0)         28  CRC-32 of bytes 0..27
 * (CRC-32 = the IEEE 802.3 / zlib CRC, mt_crc32.) mt_checkpoint_save writes the slot that does
 * not hold the newest valid checkpoint: it erases the slot's pages, programs the payload, and
 * programs the header LAST, with the next sequence number. Until the header's last write unit is
 * programmed the slot fails validation (an erased or torn header, or a payload CRC mismatch), so
 * a reset at any instant leaves the previous checkpoint or the new one valid, never a mixture:
 * the newest valid slot is the last checkpoint whose save completed its header.
 *
 * VALIDATION of a slot, in this order (the first failing test is its status):
 *   header bytes all 0xFF                                     MT_CKPT_EMPTY
 *   bad magic, version, header size or header CRC             MT_CKPT_TORN
 *   model id differs (another model or update scheme)         MT_CKPT_FOREIGN
 *   payload size differs, or does not fit the slot            MT_CKPT_SIZE
 *   payload CRC differs                                       MT_CKPT_BAD_CRC
 *   otherwise                                                 MT_CKPT_OK
 * Of two valid slots the newer sequence number wins (serial arithmetic: a is newer than b iff
 * (int32_t)(a - b) > 0).
 *
 * Python twin of the layout (tests, tools that read a flash image): microtrain/runtime/flash_image.py.
 * Like every runtime function: C99, no allocation, no printing, no globals; the only scratch is
 * a write unit (at most MT_FLASH_MAX_WRITE_UNIT bytes) and a 64-byte read buffer on the stack.
 */
#ifndef MT_FLASH_H
#define MT_FLASH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MT_FLASH_MAX_WRITE_UNIT 256u
#define MT_CHECKPOINT_MAGIC 0x4B43544Du
#define MT_CHECKPOINT_VERSION 1u
#define MT_CHECKPOINT_HEADER_BYTES 32u

typedef struct {
    int (*erase_page)(void *ctx, uint32_t page);
    int (*program)(void *ctx, uint32_t offset, const uint8_t *data, uint32_t len);
    int (*read)(void *ctx, uint32_t offset, uint8_t *data, uint32_t len);
    void *ctx;            /* passed to every callback */
    uint32_t page_size;   /* bytes per erase page: a multiple of write_unit */
    uint32_t pages;       /* pages in the region: at least 2 * mt_checkpoint_slot_pages() */
    uint32_t write_unit;  /* program granularity in bytes: a power of two, 1..MT_FLASH_MAX_WRITE_UNIT */
} mt_flash;

/* One piece of the state a checkpoint holds (trained tensors, optimizer buffers, counters). */
typedef struct {
    void *data;
    uint32_t bytes;
} mt_state_span;

typedef enum {
    MT_CKPT_OK = 0,           /* valid / done */
    MT_CKPT_EMPTY = 1,        /* slot erased; restore: no valid checkpoint in either slot */
    MT_CKPT_TORN = 2,         /* header unreadable (an interrupted write, or not a checkpoint) */
    MT_CKPT_FOREIGN = 3,      /* written for another model id */
    MT_CKPT_SIZE = 4,         /* payload size differs from the state's */
    MT_CKPT_BAD_CRC = 5,      /* payload does not match its CRC */
    MT_CKPT_ERR_FLASH = -1,   /* a driver callback failed, or a read-back differs from what was written */
    MT_CKPT_ERR_PARAM = -2,   /* NULL pointer, or page_size / write_unit not as documented above */
    MT_CKPT_ERR_SPACE = -3    /* the region has fewer than 2 * mt_checkpoint_slot_pages() pages */
} mt_checkpoint_status;

/* What a scan found, and what a save did. */
typedef struct {
    int32_t status[2];          /* mt_checkpoint_status of each slot */
    uint32_t sequence[2];       /* header fields of each slot (valid when status is not EMPTY or TORN) */
    uint32_t model_id[2];
    uint32_t payload_bytes[2];
    int32_t newest;             /* slot of the newest valid checkpoint, -1 if none */
    int32_t written_slot;       /* mt_checkpoint_save: the slot written (-1 before) */
    uint32_t written_sequence;  /* mt_checkpoint_save: its sequence number */
    uint32_t bytes_programmed;  /* mt_checkpoint_save: bytes passed to program() */
    uint32_t pages_erased;      /* mt_checkpoint_save: erase_page() calls */
} mt_checkpoint_info;

/* CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320, zlib's crc32): the CRC of `len` more bytes
 * after a prefix whose CRC is `crc` (0 for none). mt_crc32(0, "123456789", 9) == 0xCBF43926. */
uint32_t mt_crc32(uint32_t crc, const uint8_t *data, uint32_t len);

/* Pages of one slot for a payload of payload_bytes: ceil((header area + payload_bytes) / page_size),
 * header area = 32 bytes rounded up to a multiple of write_unit. 0 if flash is NULL or its
 * page_size / write_unit are not as documented. */
uint32_t mt_checkpoint_slot_pages(const mt_flash *flash, uint32_t payload_bytes);

/* Validate both slots against (model_id, payload_bytes) and fill info's status, sequence, model_id,
 * payload_bytes and newest (written_* and the counters are reset). Reads only.
 * Returns MT_CKPT_OK, or a negative mt_checkpoint_status. */
int32_t mt_checkpoint_scan(const mt_flash *flash, uint32_t model_id, uint32_t payload_bytes,
                           mt_checkpoint_info *info);

/* Write the spans as a new checkpoint (the scan above, then erase + payload + header into the slot
 * not holding the newest valid checkpoint, sequence = newest + 1 or 1, then a read-back check).
 * Returns MT_CKPT_OK or a negative status; info (may be NULL) says what was done. */
int32_t mt_checkpoint_save(const mt_flash *flash, uint32_t model_id, const mt_state_span *spans, int32_t count,
                           mt_checkpoint_info *info);

/* Load the newest valid checkpoint into the spans. Returns MT_CKPT_OK (restored), MT_CKPT_EMPTY
 * (no valid checkpoint: the spans are untouched, and info->status says why each slot was not
 * used), or a negative status. The payload is validated before a single span byte is written. */
int32_t mt_checkpoint_restore(const mt_flash *flash, uint32_t model_id, const mt_state_span *spans, int32_t count,
                              mt_checkpoint_info *info);

#ifdef __cplusplus
}
#endif

#endif /* MT_FLASH_H */
