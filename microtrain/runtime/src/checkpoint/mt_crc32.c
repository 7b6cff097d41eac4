/*
 * mt_crc32: CRC-32 as zlib computes it (reflected polynomial 0xEDB88320, initial and final
 * complement), four bits at a time through a 16-entry table in flash (64 bytes) instead of
 * the usual 1 KB byte table. Python twin: zlib.crc32.
 */
#include <stddef.h>

#include "mt_flash.h"

uint32_t mt_crc32(uint32_t crc, const uint8_t *data, uint32_t len)
{
    /* table[n] = the CRC register after shifting the nibble n through 4 steps of the polynomial */
    static const uint32_t table[16] = {
        0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
        0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu, 0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
    };
    uint32_t i;

    if (data == NULL) {
        return crc;
    }
    crc = ~crc;
    for (i = 0; i < len; ++i) {
        crc ^= data[i];
        crc = (crc >> 4) ^ table[crc & 15u];
        crc = (crc >> 4) ^ table[crc & 15u];
    }
    return ~crc;
}
