/*
 * Start-up code for microtrain firmware on the emulated Cortex-M cores (QEMU mps2-an385 /
 * an386 / an500 / an505, mps3-an547: Cortex-M3 / M4 / M7 / M33 / M55), one file for all.
 *
 * Reset_Handler, in order: enable the FPU (and with it Helium, on cores that have one) before
 * any float code, copy .data from flash, zero .bss, paint the free SRAM between the heap
 * start and the stack pointer with a pattern, start the instruction counter, open the
 * semihosting handles, run main(). At exit (from main's return or any exit() call) an atexit
 * hook (measure.c) prints the stack high-water mark and the heap in use, so that the host can
 * report SRAM = .data + .bss + heap + stack.
 *
 * Instruction counting: QEMU runs with `-icount shift=MT_ICOUNT_SHIFT`, so its virtual
 * clock advances exactly 2^shift ns per executed instruction; the SysTick (the same on every
 * Cortex-M) counts down at the board's SYSCLK of that virtual time. Instructions = elapsed
 * ticks * MT_TICK_NUM >> MT_TICK_SHIFT (e.g. 25 MHz: 40 ns per tick, 64 ns per instruction:
 * ticks * 5 >> 3), exact within one or two instructions; the build passes the core's values
 * (microtrain/targets/mcu/cores.py). The SysTick exception extends the 24-bit counter to 64
 * bits (a handful of instructions every 2^24 ticks, counted too).
 */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "mt_target.h"

#ifndef MT_ICOUNT_SHIFT
#define MT_ICOUNT_SHIFT 6
#endif
#ifndef MT_TICK_NUM /* 25 MHz SYSCLK (mps2 boards): 40 ns per tick, 64 ns per instruction */
#define MT_TICK_NUM 5
#define MT_TICK_SHIFT 3
#endif

extern uint32_t __data_load__, __data_start__, __data_end__;
extern uint32_t __bss_start__, __bss_end__;
extern uint32_t __stack_top__;

extern int main(void);
extern void initialise_monitor_handles(void);

void Reset_Handler(void);
void Default_Handler(void);
void mt_systick_handler(void);

/* ---- instruction counter: SysTick (architectural: the same addresses on every Cortex-M) ---- */
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)
#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define SYST_MAX 0x00FFFFFFu
#define ICSR_PENDSTSET (1u << 26)

static volatile uint32_t mt_systick_wraps;

void mt_systick_handler(void)
{
    mt_systick_wraps++;
}

static void mt_counter_start(void)
{
    SYST_CSR = 0u;
    SYST_RVR = SYST_MAX;
    SYST_CVR = 0u;  /* any write clears it: counting starts from the reload value */
    SYST_CSR = 7u;  /* processor clock, exception on wrap, enable */
}

/* Ticks since start, 64-bit. Re-reads when the exception ran during the read; a wrap whose
 * exception is still pending (the counter just reloaded, so its value is high) counts too. */
static uint64_t mt_ticks(void)
{
    uint32_t w1, v, pending, w2;
    do {
        w1 = mt_systick_wraps;
        v = SYST_CVR;
        pending = SCB_ICSR & ICSR_PENDSTSET;
        w2 = mt_systick_wraps;
    } while (w1 != w2);
    if (pending && v > SYST_MAX / 2u)
        w1++;
    return ((uint64_t)w1 << 24) + (uint64_t)(SYST_MAX - v);
}

/* Instructions executed since start-up (see the top comment). */
uint64_t mt_target_instructions(void)
{
    return (mt_ticks() * MT_TICK_NUM) >> MT_TICK_SHIFT;
}

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
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    SCB_CPACR |= 0xFu << 20; /* CP10 and CP11 full access: the FPU (and Helium, which uses them) */
    __asm volatile("dsb\n\tisb" ::: "memory");
#endif

    uint32_t *src = &__data_load__;
    for (uint32_t *dst = &__data_start__; dst < &__data_end__;)
        *dst++ = *src++;
    for (uint32_t *dst = &__bss_start__; dst < &__bss_end__;)
        *dst++ = 0u;

    /* Paint from the heap start up to just below our own frame. */
    uint32_t *sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    mt_target_paint(sp);

    mt_counter_start();
    initialise_monitor_handles();
    atexit(mt_target_report);
    exit(main());
}

/* Vector table: initial SP, reset, the 14 system exceptions (SysTick last); no device IRQs. */
typedef void (*mt_vector)(void);
__attribute__((section(".isr_vector"), used)) const mt_vector mt_vectors[16] = {
    (mt_vector)(uintptr_t)&__stack_top__,
    Reset_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    0, 0, 0, 0,
    Default_Handler, Default_Handler, 0, Default_Handler, mt_systick_handler,
};
