/*
 * example/main.c: microtrain in a firmware's main loop (library output of
 * `microtrain compile --target lib`). A sensor callback delivers labelled samples; each one
 * trains the model (mt_train_step), a few more are classified (mt_infer), the trained state is
 * checkpointed to flash through three callbacks (here a RAM array standing in for the chip's
 * flash driver) and restored, and the trained weights are read out (mt_read_weights).
 *
 * Replace read_sensor() with your sensor and ram_flash_* with your flash driver (erase a
 * page, program bytes, read bytes: see mt_flash in microtrain.h). printf is only used to
 * report; remove it on a board without a console. Output: one line per training step with
 * the loss as its float32 bits (no float printing needed), then the checks.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "microtrain.h"

#define STEPS 12
#define TESTS 10

/* ---- the sensor: a callback that fills one int8 sample (MT_INPUT_BYTES) and its label ---- */
typedef int (*sensor_read_fn)(void *ctx, int8_t *sample, int32_t *label);

/* A stand-in sensor: class c lights a band of the input whose position depends on c, on a
 * deterministic noise floor (a 32-bit LCG), so the example needs no data files. */
static int read_sensor(void *ctx, int8_t *sample, int32_t *label)
{
    uint32_t *state = (uint32_t *)ctx;
    uint32_t i, c;
    *state = *state * 1664525u + 1013904223u;
    c = (*state >> 16) % (uint32_t)MT_NUM_CLASSES;
    for (i = 0; i < (uint32_t)MT_INPUT_BYTES; ++i) {
        *state = *state * 1664525u + 1013904223u;
        sample[i] = (int8_t)((int32_t)(*state >> 27) - 112); /* noise around -104 */
        if ((i * (uint32_t)MT_NUM_CLASSES) / (uint32_t)MT_INPUT_BYTES == c) {
            sample[i] = (int8_t)(sample[i] + 200); /* the class's band: around +96 */
        }
    }
    *label = (int32_t)c;
    return 0;
}

/* ---- the flash: 2 slots of checkpoints in a RAM array (use the chip's flash driver) ---- */
#define PAGE_SIZE 1024u
#define WRITE_UNIT 8u
#define PAGES (2u * ((MT_STATE_BYTES + MT_CHECKPOINT_HEADER_BYTES + 2u * WRITE_UNIT + PAGE_SIZE - 1u) / PAGE_SIZE))
static uint8_t flash_mem[PAGES * PAGE_SIZE];

static int ram_flash_erase(void *ctx, uint32_t page)
{
    (void)ctx;
    memset(flash_mem + page * PAGE_SIZE, 0xFF, PAGE_SIZE);
    return 0;
}

static int ram_flash_program(void *ctx, uint32_t offset, const uint8_t *data, uint32_t len)
{
    uint32_t i;
    (void)ctx;
    for (i = 0; i < len; ++i) {
        flash_mem[offset + i] &= data[i]; /* NOR flash: programming only clears bits */
    }
    return 0;
}

static int ram_flash_read(void *ctx, uint32_t offset, uint8_t *data, uint32_t len)
{
    (void)ctx;
    memcpy(data, flash_mem + offset, len);
    return 0;
}

static uint32_t f32_bits(float v)
{
    uint32_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}

static int8_t sample[MT_INPUT_BYTES];
static uint8_t weights[MT_STATE_BYTES]; /* the trained tensors are part of the state: large enough */

int main(void)
{
    const mt_flash flash = {ram_flash_erase, ram_flash_program, ram_flash_read, NULL, PAGE_SIZE, PAGES, WRITE_UNIT};
    sensor_read_fn sensor = read_sensor;
    uint32_t sensor_state = 12345u, i, sum = 0;
    int32_t label, correct = 0, status;
    int8_t logits[MT_NUM_CLASSES];
    mt_checkpoint_info info;
    float loss;

    mt_init();
    for (i = 0; i < STEPS; ++i) {
        sensor(&sensor_state, sample, &label);
        loss = mt_train_step(sample, label);
        if (mt_last_error() != 0) {
            printf("step %lu: error %d\n", (unsigned long)i, mt_last_error());
            return 1;
        }
        printf("step %lu label %ld loss_bits %08lx\n", (unsigned long)i, (long)label, (unsigned long)f32_bits(loss));
    }
    for (i = 0; i < TESTS; ++i) {
        sensor(&sensor_state, sample, &label);
        correct += mt_infer(sample, logits) == label;
    }
    printf("correct %ld of %d\n", (long)correct, TESTS);

    memset(flash_mem, 0xFF, sizeof flash_mem);
    status = mt_save_state(&flash, &info);
    printf("save %ld\n", (long)status);
    if (mt_read_weights(weights, mt_weights_bytes()) != 0) {
        return 2;
    }
    for (i = 0; i < mt_weights_bytes(); ++i) {
        sum = sum * 31u + weights[i];
    }
    printf("weights %lu bytes checksum %08lx\n", (unsigned long)mt_weights_bytes(), (unsigned long)sum);
    /* scramble the trained tensors, then bring them back from the checkpoint */
    memset(weights, 0, mt_weights_bytes());
    mt_write_weights(weights, mt_weights_bytes());
    status = mt_restore_state(&flash, &info);
    mt_read_weights(weights, mt_weights_bytes());
    for (sum = 0, i = 0; i < mt_weights_bytes(); ++i) {
        sum = sum * 31u + weights[i];
    }
    printf("restore %ld checksum %08lx samples %lu\n", (long)status, (unsigned long)sum,
           (unsigned long)mt_samples_seen());
    return status != 0;
}
