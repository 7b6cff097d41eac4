"""The portable driver ``main/mt_main.c`` (CONTRACTS.md): stdio only, host and semihosting.

Reads ``mt_config.txt`` (``key value`` lines: steps, lr, seed, eval, train_count,
test_count, watch; lr_schedule (0 constant, 1 cosine), warmup and total (updates) set the
learning-rate schedule, each defaulting to the compiled one), streams one sample at a time from
``mt_train_x.bin`` / ``mt_train_y.bin``
(int8 samples, int32 little-endian labels; sample i of step i modulo train_count), prints
``step <i> loss <%.6f> bits <%08lx>`` per step and ``eval correct <c> total <n>``, and
writes the trained tensors in ``mt_trainable`` order to ``mt_weights.bin``. Every loss goes through
the divergence watch (``WATCH_C``, twin of ``train/divergence.py``; ``watch 0`` turns it off): a
diverged run prints ``diverged step <i> reason <code>`` and stops there, without evaluating or
writing ``mt_weights.bin``. With ``weights_in 1``
in the config it first reads ``mt_weights_in.bin`` (the same layout) into the trained tensors, so
a run continues from tensors trained elsewhere (the fleet server's aggregate). Checkpoints
(``main/mt_flash_file.c``, a flash region in the file ``mt_flash.bin``): ``checkpoint_every N``
saves the trained state every N samples, ``restore 1`` first loads the newest valid checkpoint
and continues from its sample count up to ``steps`` (``flash_page_size``, ``flash_write_unit``,
``flash_pages`` set the geometry, default 2048 / 8 / two slots; ``power_cut_at N`` loses power
during flash operation N; ``dump_state 1`` writes each saved and the restored state to files).
``prequential 1`` prints ``pred <i> <predicted> <label>`` after each step: the class the model
predicted for the sample before learning from it (``mt_last_prediction``). An autoencoder
(``MT_LOSS_MSE``) prints ``score <i> <bits>`` for each evaluated sample instead: its reconstruction
error (the anomaly score), whose float32 bits the labels (1 = anomaly) are scored against. Built with
``-DMT_DEBUG_ARENA`` it also fills the arena with a pattern before every step and prints
``arena high_water <bytes> size <bytes>``: the highest arena byte any step wrote; with
``-DMT_DEBUG_LOGITS`` it prints ``logits <i> <v0> <v1> ...`` for every evaluated sample. In a ``--stream-input`` project
(``MT_STREAM_INPUT`` in mt_model.h) the sample is never read whole: the model pulls its rows
from the data file (fseek/fread) while it runs. stdio uses small static buffers (no heap).
The loss is printed exactly as ``%.6f`` would print it but through integer arithmetic
(``FIXED6_C``), and ``lr_bits`` (the float's bit pattern, written by ``driver_files``) is read
instead of ``lr`` when present: newlib's dtoa/strtod allocate their bigints on the heap
(~0.6 KB on the Cortex-M7), so a normal run never calls them.
"""

FIXED6_C = r"""/* x as printf("%.6f", (double)x) prints it, without newlib's dtoa (whose bigints are malloc'd).
 * A float is m * 2^e exactly (m < 2^24), so the fraction times 10^6 is exact in 64 bits and is
 * rounded to nearest, ties to even, as printf rounds the exact binary value. Returns 0 for
 * |x| >= 2^31, infinities and NaN: the caller prints those with printf. */
static int mt_fixed6(float x, int *negative, unsigned long *int_part, unsigned long *frac_part)
{
    uint32_t bits, mant, ip, rem;
    int32_t e, k;
    uint64_t t, q, r, half;
    memcpy(&bits, &x, sizeof bits);
    e = (int32_t)((bits >> 23) & 0xFFu);
    mant = bits & 0x7FFFFFu;
    if (e >= 127 + 31) return 0;
    if (e == 0) e = 1; else mant |= 0x800000u; /* subnormal / normal */
    e -= 150; /* x = mant * 2^e */
    q = 0;
    if (e >= 0) {
        ip = mant << e; /* e <= 7: below 2^31 */
    } else {
        k = -e;
        ip = k >= 24 ? 0u : mant >> k;
        rem = k >= 24 ? mant : mant & ((1u << k) - 1u);
        if (k <= 44) { /* for k >= 45, rem * 10^6 < 2^44 <= 2^(k-1): rounds to 0 */
            t = (uint64_t)rem * 1000000u;
            q = t >> k;
            r = t - (q << k);
            half = (uint64_t)1 << (k - 1);
            if (r > half || (r == half && (q & 1u))) q++;
            if (q == 1000000u) {
                ip++;
                q = 0;
            }
        }
    }
    *negative = (int)(bits >> 31);
    *int_part = (unsigned long)ip;
    *frac_part = (unsigned long)q;
    return 1;
}
"""

WATCH_C = r"""/* The divergence watch: the C twin of microtrain/train/divergence.py, the same rule at the same
 * step. Fed each step's loss and its sample's label; returns 0 while training is healthy, else why
 * it diverged: 1 the loss is NaN or infinite; 2 collapsed: the loss equalled ln(C) (every logit
 * equal) for MT_WATCH_WINDOW steps in a row after it had differed; 3 blown up: more than half of the
 * last MT_WATCH_WINDOW losses exceed MT_WATCH_FACTOR x max(ln C, first loss) (x4 is exact in float),
 * or the float sum (in ring order) of the last MT_WATCH_MEAN_WINDOW exceeds MT_WATCH_MEAN_WINDOW x
 * MT_WATCH_MEAN_FACTOR x that level;
 * 4 stuck: over the last MT_STUCK_WINDOW samples the loss bits are a function of the label alone and
 * their float sum (in ring order) is >= MT_STUCK_WINDOW * MT_STUCK_MEAN * ln C, after a window in
 * which they were not a function of the label. */
#define MT_WATCH_WINDOW 10
#define MT_WATCH_FACTOR 4.0f
#define MT_WATCH_MEAN_FACTOR 3.0f
#define MT_WATCH_MEAN_WINDOW 30
#define MT_STUCK_WINDOW 30
#define MT_STUCK_MEAN 0.5f

static struct {
    float base, ln_c;
    long flat, seen, count;
    int started, moved, next, varied;
    unsigned char high[MT_WATCH_WINDOW];
    float values[MT_WATCH_MEAN_WINDOW];
    uint32_t ring_bits[MT_STUCK_WINDOW];
    int32_t ring_label[MT_STUCK_WINDOW];
} mt_watch;

static int mt_watch_stuck(float loss, int32_t label)
{
    uint32_t bits;
    float total = 0.0f, x;
    int a, b;
    memcpy(&bits, &loss, sizeof bits);
    mt_watch.ring_bits[mt_watch.seen % MT_STUCK_WINDOW] = bits;
    mt_watch.ring_label[mt_watch.seen % MT_STUCK_WINDOW] = label;
    mt_watch.seen++;
    if (mt_watch.seen < MT_STUCK_WINDOW) return 0;
    for (a = 0; a < MT_STUCK_WINDOW; ++a) {
        for (b = a + 1; b < MT_STUCK_WINDOW; ++b) {
            if (mt_watch.ring_label[a] == mt_watch.ring_label[b] && mt_watch.ring_bits[a] != mt_watch.ring_bits[b]) {
                mt_watch.varied = 1;
                return 0;
            }
        }
    }
    for (a = 0; a < MT_STUCK_WINDOW; ++a) {
        memcpy(&x, &mt_watch.ring_bits[a], sizeof x);
        total += x;
    }
    return mt_watch.varied && total >= ((float)MT_STUCK_WINDOW * MT_STUCK_MEAN) * mt_watch.ln_c;
}

static int mt_watch_loss(float loss, int32_t label)
{
    int k, above = 0;
    float total = 0.0f;
    if (!isfinite(loss)) return 1;
    if (!mt_watch.started) {
        mt_watch.ln_c = logf((float)(MT_NUM_CLASSES > 2 ? MT_NUM_CLASSES : 2));
        mt_watch.base = loss > mt_watch.ln_c ? loss : mt_watch.ln_c;
        mt_watch.started = 1;
    }
    if (fabsf(loss - mt_watch.ln_c) <= 1e-5f * mt_watch.ln_c) {
        mt_watch.flat++;
    } else {
        mt_watch.flat = 0;
        mt_watch.moved = 1;
    }
    if (mt_watch.moved && mt_watch.flat >= MT_WATCH_WINDOW) return 2;
    mt_watch.high[mt_watch.next] = (unsigned char)(loss > MT_WATCH_FACTOR * mt_watch.base);
    mt_watch.next = (mt_watch.next + 1) % MT_WATCH_WINDOW;
    for (k = 0; k < MT_WATCH_WINDOW; ++k) above += mt_watch.high[k];
    if (above > MT_WATCH_WINDOW / 2) return 3;
    mt_watch.values[mt_watch.count % MT_WATCH_MEAN_WINDOW] = loss;
    mt_watch.count++;
    for (k = 0; k < MT_WATCH_MEAN_WINDOW; ++k) total += mt_watch.values[k];
    if (mt_watch.count >= MT_WATCH_MEAN_WINDOW &&
        total > (MT_WATCH_MEAN_FACTOR * (float)MT_WATCH_MEAN_WINDOW) * mt_watch.base) return 3;
    return mt_watch_stuck(loss, label) ? 4 : 0;
}

/* No sign of trouble in the window (LossWatch.healthy): a safe moment to checkpoint. */
static int mt_watch_healthy(void)
{
    int k;
    if (mt_watch.flat != 0) return 0;
    for (k = 0; k < MT_WATCH_WINDOW; ++k) {
        if (mt_watch.high[k]) return 0;
    }
    return 1;
}
"""

MAIN_C = r"""/* mt_main.c: generated by microtrain. Portable driver: stdio only (host or semihosting). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mt_flash_file.h"
#include "mt_model.h"

#ifndef MT_LOSS_MSE
static int8_t logits[MT_NUM_CLASSES];
#endif

""" + FIXED6_C + WATCH_C + r"""

/* stdio buffers: small and static, so that newlib (semihosting) never mallocs its default
 * 1 KB per stream; a read larger than a buffer goes in chunks straight to the destination. */
static char mt_out_buf[128];     /* stdout, line buffered */
static char mt_file_buf[512];    /* the config, the samples (x), then the weights file */
static char mt_label_buf[16];    /* the labels (y), open together with the samples */

static FILE *open_file(const char *name, const char *mode, char *buf, size_t size)
{
    FILE *f = fopen(name, mode);
    if (f != NULL) setvbuf(f, buf, _IOFBF, size);
    return f;
}

#ifdef MT_STREAM_INPUT
/* --stream-input: the model pulls the rows of the current sample from the data file on demand. */
typedef struct {
    FILE *f;
    long index;
    int failed;
} mt_row_source;

static mt_row_source source;

static void read_rows(int8_t *dst, int32_t first_row, int32_t rows, void *ctx)
{
    mt_row_source *s = (mt_row_source *)ctx;
    const long at = s->index * (long)MT_INPUT_BYTES + (long)first_row * MT_INPUT_ROW_BYTES;
    const size_t n = (size_t)rows * MT_INPUT_ROW_BYTES;
    if (fseek(s->f, at, SEEK_SET) != 0 || fread(dst, 1, n, s->f) != n) {
        memset(dst, 0, n);
        s->failed = 1;
    }
}
#define MT_SAMPLE NULL
#else
#define MT_SAMPLE mt_input_buffer()
#endif

static int read_sample(FILE *fx, FILE *fy, long index, int32_t *label)
{
    unsigned char b[4];
#ifdef MT_STREAM_INPUT
    /* only check that the sample exists; its rows are read while the model runs */
    if (fseek(fx, (index + 1) * (long)MT_INPUT_BYTES - 1, SEEK_SET) != 0 || fread(b, 1, 1, fx) != 1) {
        return -1;
    }
    source.f = fx;
    source.index = index;
    source.failed = 0;
    mt_set_input_reader(read_rows, &source);
#else
    if (fseek(fx, index * (long)MT_INPUT_BYTES, SEEK_SET) != 0 ||
        fread(mt_input_buffer(), 1, MT_INPUT_BYTES, fx) != (size_t)MT_INPUT_BYTES) {
        return -1;
    }
#endif
    if (fseek(fy, index * 4L, SEEK_SET) != 0 || fread(b, 1, 4, fy) != 4) {
        return -1;
    }
    *label = (int32_t)((uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24));
    return 0;
}

int main(void)
{
    long steps = 0, eval_n = 0, train_n = 0, test_n = 0, weights_in = 0, watch = 1, i;
    long lr_kind = MT_LR_KIND, checkpoint_every = 0, restore = 0, dump_state = 0, start = 0, prequential = 0;
    unsigned long page_size = 2048, write_unit = 8, flash_pages = 0, cut_at = 0;
    mt_flash flash;
    unsigned long warmup = MT_LR_WARMUP, total = MT_LR_TOTAL;
    float lr = MT_LR_BASE;
    unsigned long seed = 0;
    char key[64], value[64];
    FILE *cfg, *fx, *fy, *fw;
    int32_t label;
    long correct = 0;
    int k, lr_exact = 0;
#ifdef MT_DEBUG_ARENA
    uint32_t high_water = 0, hw;
#endif

    setvbuf(stdout, mt_out_buf, _IOLBF, sizeof mt_out_buf);
    cfg = open_file("mt_config.txt", "r", mt_file_buf, sizeof mt_file_buf);
    if (cfg == NULL) {
        printf("error cannot open mt_config.txt\n");
        return 1;
    }
#ifdef MT_LOSS_MSE
    watch = 0; /* the divergence watch's rules are those of a classifier's cross-entropy (ln C, labels) */
#endif
    while (fscanf(cfg, "%63s %63s", key, value) == 2) {
        if (strcmp(key, "steps") == 0) steps = strtol(value, NULL, 10);
        else if (strcmp(key, "lr_bits") == 0) { /* exact, and no strtod (heap) */
            uint32_t b = (uint32_t)strtoul(value, NULL, 16);
            memcpy(&lr, &b, sizeof lr);
            lr_exact = 1;
        }
        else if (strcmp(key, "lr") == 0 && !lr_exact) lr = (float)strtod(value, NULL);
        else if (strcmp(key, "seed") == 0) seed = strtoul(value, NULL, 10);
        else if (strcmp(key, "eval") == 0) eval_n = strtol(value, NULL, 10);
        else if (strcmp(key, "train_count") == 0) train_n = strtol(value, NULL, 10);
        else if (strcmp(key, "test_count") == 0) test_n = strtol(value, NULL, 10);
        else if (strcmp(key, "weights_in") == 0) weights_in = strtol(value, NULL, 10);
        else if (strcmp(key, "lr_schedule") == 0) lr_kind = strtol(value, NULL, 10);
        else if (strcmp(key, "warmup") == 0) warmup = strtoul(value, NULL, 10);
        else if (strcmp(key, "total") == 0) total = strtoul(value, NULL, 10);
        else if (strcmp(key, "checkpoint_every") == 0) checkpoint_every = strtol(value, NULL, 10);
        else if (strcmp(key, "restore") == 0) restore = strtol(value, NULL, 10);
        else if (strcmp(key, "dump_state") == 0) dump_state = strtol(value, NULL, 10);
        else if (strcmp(key, "flash_page_size") == 0) page_size = strtoul(value, NULL, 10);
        else if (strcmp(key, "flash_write_unit") == 0) write_unit = strtoul(value, NULL, 10);
        else if (strcmp(key, "flash_pages") == 0) flash_pages = strtoul(value, NULL, 10);
        else if (strcmp(key, "power_cut_at") == 0) cut_at = strtoul(value, NULL, 10);
        else if (strcmp(key, "prequential") == 0) prequential = strtol(value, NULL, 10);
        else if (strcmp(key, "watch") == 0) watch = strtol(value, NULL, 10);
    }
    fclose(cfg);
    mt_init();
    mt_set_seed((uint32_t)seed);
    mt_set_schedule((int32_t)lr_kind, lr, (uint32_t)warmup, (uint32_t)total);
    if (weights_in) { /* continue from trained tensors given in mt_trainable order (exact size) */
        fw = open_file("mt_weights_in.bin", "rb", mt_file_buf, sizeof mt_file_buf);
        if (fw == NULL) {
            printf("error cannot open mt_weights_in.bin\n");
            return 1;
        }
        for (k = 0; k < MT_NUM_TRAINABLE; ++k) {
            if (fread(mt_trainable[k].data, 1, mt_trainable[k].bytes, fw) != (size_t)mt_trainable[k].bytes) {
                printf("error mt_weights_in.bin is too short for %s\n", mt_trainable[k].name);
                return 1;
            }
        }
        if (fread(value, 1, 1, fw) != 0) {
            printf("error mt_weights_in.bin is longer than the trained tensors\n");
            return 1;
        }
        fclose(fw);
    }
    if (checkpoint_every > 0 || restore) { /* the checkpoint flash: mt_flash.bin, two slots by default */
        flash.page_size = (uint32_t)page_size;
        flash.write_unit = (uint32_t)write_unit;
        if (flash_pages == 0) flash_pages = 2u * mt_checkpoint_slot_pages(&flash, MT_STATE_BYTES);
        if (flash_pages == 0 || mt_flash_file_open(&flash, "mt_flash.bin", (uint32_t)page_size, (uint32_t)flash_pages,
                                                   (uint32_t)write_unit, cut_at) != 0) {
            printf("error cannot open mt_flash.bin (page size %lu, write unit %lu)\n", page_size, write_unit);
            return 1;
        }
        if (restore) { /* continue from the newest valid checkpoint: its weights, state and sample count */
            if (mt_checkpoint_boot(&flash, (int)dump_state) != 0) return 1;
            start = (long)mt_samples_seen();
        }
    }

    if (steps > start) {
        fx = open_file("mt_train_x.bin", "rb", mt_file_buf, sizeof mt_file_buf);
        fy = open_file("mt_train_y.bin", "rb", mt_label_buf, sizeof mt_label_buf);
        if (fx == NULL || fy == NULL || train_n <= 0) {
            printf("error cannot open mt_train_x.bin / mt_train_y.bin (or train_count is 0)\n");
            return 1;
        }
        for (i = start; i < steps; ++i) {
            float loss;
            uint32_t bits;
            int neg;
            unsigned long ip, fp;
#ifdef MT_DEBUG_ARENA
            /* before the read: the sample is read straight into the arena's input tensor */
            mt_debug_arena_fill((uint8_t)((i & 1) ? 0xA5 : 0x5A));
#endif
            if (read_sample(fx, fy, i % train_n, &label) != 0) {
                printf("error cannot read training sample %ld\n", i % train_n);
                return 1;
            }
            loss = mt_train_step(MT_SAMPLE, label);
#ifdef MT_STREAM_INPUT
            if (source.failed) {
                printf("error cannot read training sample %ld\n", i % train_n);
                return 1;
            }
#endif
            if (mt_last_error() != 0) {
                printf("error kernel status %d at step %ld\n", mt_last_error(), i);
                return 1;
            }
#ifdef MT_DEBUG_ARENA
            hw = mt_debug_arena_high_water((uint8_t)((i & 1) ? 0xA5 : 0x5A));
            if (hw > high_water) high_water = hw;
#endif
            memcpy(&bits, &loss, sizeof bits);
            if (mt_fixed6(loss, &neg, &ip, &fp)) {
                printf("step %ld loss %s%lu.%06lu bits %08lx\n", i, neg ? "-" : "", ip, fp, (unsigned long)bits);
            } else {
                printf("step %ld loss %.6f bits %08lx\n", i, (double)loss, (unsigned long)bits);
            }
#ifndef MT_LOSS_MSE
            if (prequential) printf("pred %ld %d %ld\n", i, mt_last_prediction(), (long)label);
#else
            (void)prequential; /* an autoencoder's prequential curve is its loss: each step's, before the update */
#endif
            if (watch && (k = mt_watch_loss(loss, label)) != 0) {
                /* stop: no further updates, no evaluation, no mt_weights.bin and no checkpoint of these
                 * weights (the host keeps the last good model) */
                printf("diverged step %ld reason %d\n", i, k);
                fclose(fx);
                fclose(fy);
                return 0;
            }
            if (checkpoint_every > 0 && (i + 1) % checkpoint_every == 0 && (!watch || mt_watch_healthy()) &&
                mt_checkpoint_commit(&flash, (int)dump_state) != 0) {
                return 1;
            }
        }
        fclose(fx);
        fclose(fy);
    }
#ifdef MT_DEBUG_ARENA
    printf("arena high_water %lu size %lu\n", (unsigned long)high_water, (unsigned long)MT_ARENA_BYTES);
#endif
    if (eval_n > test_n) eval_n = test_n;
    if (eval_n > 0) {
        fx = open_file("mt_test_x.bin", "rb", mt_file_buf, sizeof mt_file_buf);
        fy = open_file("mt_test_y.bin", "rb", mt_label_buf, sizeof mt_label_buf);
        if (fx == NULL || fy == NULL) {
            printf("error cannot open mt_test_x.bin / mt_test_y.bin\n");
            return 1;
        }
        for (i = 0; i < eval_n; ++i) {
            if (read_sample(fx, fy, i, &label) != 0) {
                printf("error cannot read test sample %ld\n", i);
                return 1;
            }
#ifdef MT_LOSS_MSE
            { /* the anomaly score of the sample (the labels mark anomalies: scored in Python) */
                const float score = mt_reconstruction_error(MT_SAMPLE);
                uint32_t sb;
                memcpy(&sb, &score, sizeof sb);
                printf("score %ld %08lx\n", i, (unsigned long)sb);
            }
#else
            if (mt_infer(MT_SAMPLE, logits) == label) correct++;
#ifdef MT_DEBUG_LOGITS
            printf("logits %ld", i);
            for (k = 0; k < MT_NUM_CLASSES; ++k) printf(" %d", (int)logits[k]);
            printf("\n");
#endif
#endif
#ifdef MT_STREAM_INPUT
            if (source.failed) {
                printf("error cannot read test sample %ld\n", i);
                return 1;
            }
#endif
            if (mt_last_error() != 0) {
                printf("error kernel status %d in inference\n", mt_last_error());
                return 1;
            }
        }
        fclose(fx);
        fclose(fy);
    }
    printf("eval correct %ld total %ld\n", correct, eval_n);
    fw = open_file("mt_weights.bin", "wb", mt_file_buf, sizeof mt_file_buf);
    if (fw == NULL) {
        printf("error cannot write mt_weights.bin\n");
        return 1;
    }
    for (k = 0; k < MT_NUM_TRAINABLE; ++k) {
        if (fwrite(mt_trainable[k].data, 1, mt_trainable[k].bytes, fw) != (size_t)mt_trainable[k].bytes) {
            printf("error short write to mt_weights.bin\n");
            return 1;
        }
    }
    fclose(fw);
    printf("done\n");
    return 0;
}
"""
