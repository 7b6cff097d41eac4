/*
 * What the emulated firmware reports about itself, shared by every core's start-up code:
 * painting the free SRAM, the report at exit (stack high-water, heap in use, instructions
 * executed) and, when the build asks for it (MT_WRAP_MODEL), one line per call of
 * mt_train_step / mt_infer with the instructions it took (the firmware is linked with
 * `-Wl,--wrap=mt_train_step,--wrap=mt_infer`, so the portable driver is untouched).
 *
 * From the start-up code: mt_target_instructions(). From the linker script: __mt_heap_start
 * (the heap grows up from it) and __mt_stack_top (the stack grows down from it).
 *
 * Lines printed (parsed by microtrain/targets/mcu/qemu.py):
 *   stack_high_water <bytes>   heap_used <bytes>   instructions_total <n>
 *   cost train_step <i> instructions <n>           cost infer <i> instructions <n>
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "mt_target.h"

extern void *sbrk(ptrdiff_t increment); /* the C library's; not declared under -std=c99 */
extern uint32_t __mt_heap_start[], __mt_stack_top[];

#define MT_STACK_PATTERN 0xC5A5C5A5u

/* The small printf variants have no %llu: format a 64-bit count ourselves. */
static const char *mt_u64(uint64_t v, char buf[21])
{
    char *p = buf + 20;
    *p = '\0';
    do {
        *--p = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v != 0u);
    return p;
}

void mt_target_paint(const uint32_t *sp)
{
    for (uint32_t *p = __mt_heap_start; p < sp - 16; p++)
        *p = MT_STACK_PATTERN;
}

static uint32_t *mt_free_bottom(void)
{
    /* The heap grows up from __mt_heap_start into the painted area: scan above the break. */
    uint32_t *brk = (uint32_t *)sbrk(0);
    uint32_t *lo = __mt_heap_start;
    if ((void *)brk != (void *)-1 && brk > lo)
        lo = brk;
    return (uint32_t *)(((uintptr_t)lo + 3u) & ~(uintptr_t)3u);
}

void mt_target_report(void)
{
    uint32_t *p = mt_free_bottom();
    uint32_t *top = __mt_stack_top;
    char buf[21];
    while (p < top && *p == MT_STACK_PATTERN)
        p++;
    printf("stack_high_water %lu\n", (unsigned long)((uintptr_t)top - (uintptr_t)p));
    printf("heap_used %lu\n", (unsigned long)((uintptr_t)sbrk(0) - (uintptr_t)__mt_heap_start));
    printf("instructions_total %s\n", mt_u64(mt_target_instructions(), buf));
    fflush(stdout);
}

#ifdef MT_WRAP_MODEL
extern float __real_mt_train_step(const int8_t *input, int32_t label);
extern int __real_mt_infer(const int8_t *input, int8_t *logits);
static unsigned long mt_step_index, mt_infer_index;

float __wrap_mt_train_step(const int8_t *input, int32_t label);
float __wrap_mt_train_step(const int8_t *input, int32_t label)
{
    uint64_t t0 = mt_target_instructions();
    float loss = __real_mt_train_step(input, label);
    uint64_t t1 = mt_target_instructions();
    char buf[21];
    printf("cost train_step %lu instructions %s\n", mt_step_index++, mt_u64(t1 - t0, buf));
    return loss;
}

int __wrap_mt_infer(const int8_t *input, int8_t *logits);
int __wrap_mt_infer(const int8_t *input, int8_t *logits)
{
    uint64_t t0 = mt_target_instructions();
    int cls = __real_mt_infer(input, logits);
    uint64_t t1 = mt_target_instructions();
    char buf[21];
    printf("cost infer %lu instructions %s\n", mt_infer_index++, mt_u64(t1 - t0, buf));
    return cls;
}
#endif
