/*
 * Start-up code for microtrain firmware on an emulated Cortex-M7 (QEMU mps2-an500).
 *
 * Reset_Handler, in order: enable the FPU (before any float code), copy .data from flash,
 * zero .bss, paint the free SRAM between the heap start and the stack pointer with a
 * pattern, start the instruction counter, open the semihosting handles, run main(). At exit
 * (from main's return or any exit() call) an atexit hook prints the stack high-water mark
 * and the heap in use, so that the host can report SRAM = .data + .bss + heap + stack.
 *
 * Instruction counting: QEMU runs with `-icount shift=MT_ICOUNT_SHIFT`, so its virtual
 * clock advances exactly 2^shift ns per executed instruction; CMSDK APB timer 0 counts down
 * at the 25 MHz system clock of that virtual time. Instructions = elapsed ticks * 40 ns /
 * 2^shift (within one instruction). The timer's underflow interrupt extends it to 64 bits.
 *
 * `mt_train_step` and `mt_infer` are wrapped (`-Wl,--wrap=...`) when the build asks for it,
 * to print the instructions each call took without touching the portable driver.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <unistd.h>

extern void *sbrk(ptrdiff_t increment); /* newlib; not declared under -std=c99 */

#ifndef MT_ICOUNT_SHIFT
#define MT_ICOUNT_SHIFT 6
#endif
#define MT_STACK_PATTERN 0xC5A5C5A5u

extern uint32_t __data_load__, __data_start__, __data_end__;
extern uint32_t __bss_start__, __bss_end__;
extern uint32_t __heap_start__, __stack_top__;

extern int main(void);
extern void initialise_monitor_handles(void);

void Reset_Handler(void);
void Default_Handler(void);
void mt_timer0_handler(void);

/* ---- instruction counter (CMSDK APB timer 0 on mps2-an500, IRQ 8) ---- */
#define TIMER0_CTRL (*(volatile uint32_t *)0x40000000u)
#define TIMER0_VALUE (*(volatile uint32_t *)0x40000004u)
#define TIMER0_RELOAD (*(volatile uint32_t *)0x40000008u)
#define TIMER0_INTCLEAR (*(volatile uint32_t *)0x4000000Cu)
#define NVIC_ISER0 (*(volatile uint32_t *)0xE000E100u)
#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)

static volatile uint32_t mt_timer_wraps;

void mt_timer0_handler(void)
{
    TIMER0_INTCLEAR = 1u;
    mt_timer_wraps++;
}

static void mt_counter_start(void)
{
    TIMER0_CTRL = 0u;
    TIMER0_RELOAD = 0xFFFFFFFFu;
    TIMER0_VALUE = 0xFFFFFFFFu;
    NVIC_ISER0 = 1u << 8;
    TIMER0_CTRL = 1u | 8u; /* enable, interrupt on underflow */
}

/* Timer ticks since start, 64-bit; re-reads when a wrap happened during the read. */
static uint64_t mt_ticks(void)
{
    uint32_t w1, v, w2;
    do {
        w1 = mt_timer_wraps;
        v = TIMER0_VALUE;
        w2 = mt_timer_wraps;
    } while (w1 != w2);
    return ((uint64_t)w1 << 32) + (uint64_t)(0xFFFFFFFFu - v);
}

/* Instructions executed since start-up (exact within one instruction, see top comment). */
uint64_t mt_target_instructions(void)
{
    return (mt_ticks() * 40u) >> MT_ICOUNT_SHIFT;
}

/* newlib-nano's printf has no %llu: format a 64-bit count ourselves. */
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

/* ---- stack painting ---- */
static uint32_t *mt_free_bottom(void)
{
    /* The heap grows up from __heap_start__ into the painted area: scan above the break. */
    uint32_t *brk = (uint32_t *)sbrk(0);
    uint32_t *lo = (uint32_t *)&__heap_start__;
    if ((void *)brk != (void *)-1 && brk > lo)
        lo = brk;
    return (uint32_t *)(((uintptr_t)lo + 3u) & ~(uintptr_t)3u);
}

static void mt_report_memory(void)
{
    uint32_t *p = mt_free_bottom();
    uint32_t *top = &__stack_top__;
    while (p < top && *p == MT_STACK_PATTERN)
        p++;
    unsigned long heap = (unsigned long)((uintptr_t)sbrk(0) - (uintptr_t)&__heap_start__);
    printf("stack_high_water %lu\n", (unsigned long)((uintptr_t)top - (uintptr_t)p));
    printf("heap_used %lu\n", heap);
    char buf[21];
    printf("instructions_total %s\n", mt_u64(mt_target_instructions(), buf));
    fflush(stdout);
}

/* ---- optional wrappers that measure one call each ---- */
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

/* newlib calls these around static constructors; nothing to do on bare metal. */
void _init(void);
void _fini(void);
void _init(void) {}
void _fini(void) {}

__attribute__((naked, noreturn)) static void mt_hang(void)
{
    __asm volatile("1: b 1b");
}

void Default_Handler(void)
{
    /* A fault: tell the host through semihosting and stop with a distinctive code. */
    static const char msg[] = "microtrain: hard fault or unexpected exception\n";
    write(2, msg, sizeof msg - 1);
    _exit(101);
    mt_hang();
}

void Reset_Handler(void)
{
    SCB_CPACR |= 0xFu << 20; /* CP10 and CP11 full access: the FPU */
    __asm volatile("dsb\n\tisb" ::: "memory");

    uint32_t *src = &__data_load__;
    for (uint32_t *dst = &__data_start__; dst < &__data_end__;)
        *dst++ = *src++;
    for (uint32_t *dst = &__bss_start__; dst < &__bss_end__;)
        *dst++ = 0u;

    /* Paint from the heap start up to just below our own frame. */
    uint32_t *sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    for (uint32_t *p = &__heap_start__; p < sp - 16; p++)
        *p = MT_STACK_PATTERN;

    mt_counter_start();
    initialise_monitor_handles();
    atexit(mt_report_memory);
    exit(main());
}

/* Vector table: initial SP, reset, 14 system exceptions, then device IRQs 0..31. */
typedef void (*mt_vector)(void);
__attribute__((section(".isr_vector"), used)) const mt_vector mt_vectors[16 + 32] = {
    (mt_vector)(uintptr_t)&__stack_top__,
    Reset_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    0, 0, 0, 0,
    Default_Handler, Default_Handler, 0, Default_Handler, Default_Handler,
    [16 + 8] = mt_timer0_handler,
};
