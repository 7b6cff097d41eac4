/*
 * mt_weights.c: read and write the trained tensors of the library as one byte string (the
 * tensors of mt_trainable[], back to back in its order, in the device's byte order), e.g. to
 * send the trained model to a host or to load weights trained elsewhere. Part of the library
 * output of `microtrain compile --target lib`; see microtrain.h.
 */
#include <string.h>

#include "microtrain.h"

uint32_t mt_weights_bytes(void)
{
    uint32_t i, total = 0;
    for (i = 0; i < (uint32_t)MT_NUM_TRAINABLE; ++i) {
        total += mt_trainable[i].bytes;
    }
    return total;
}

int32_t mt_read_weights(uint8_t *dst, uint32_t bytes)
{
    uint32_t i, at = 0;
    if (dst == NULL || bytes != mt_weights_bytes()) {
        return -1;
    }
    for (i = 0; i < (uint32_t)MT_NUM_TRAINABLE; ++i) {
        memcpy(dst + at, mt_trainable[i].data, mt_trainable[i].bytes);
        at += mt_trainable[i].bytes;
    }
    return 0;
}

int32_t mt_write_weights(const uint8_t *src, uint32_t bytes)
{
    uint32_t i, at = 0;
    if (src == NULL || bytes != mt_weights_bytes()) {
        return -1;
    }
    for (i = 0; i < (uint32_t)MT_NUM_TRAINABLE; ++i) {
        memcpy(mt_trainable[i].data, src + at, mt_trainable[i].bytes);
        at += mt_trainable[i].bytes;
    }
    return 0;
}
