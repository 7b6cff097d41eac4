/*
 * Start-up additions for microtrain firmware on an emulated RISC-V microcontroller (QEMU
 * virt, RV32IMC / RV32IMAFC, picolibc with its semihosting crt0).
 *
 * picolibc's crt0 (linked with --crt0=semihost) sets the stack and global pointers, enables
 * the FPU when the core has one, copies .data, zeroes .bss, sets up thread-local storage
 * (errno), runs the constructors, main() and exit(). This file adds, as the first
 * constructor: a machine-mode trap handler that reports a fault and exits with code 101
 * (as the Cortex-M start-up does), painting of the free SRAM between the heap start and the
 * stack pointer, and the atexit hook (measure.c) that prints the stack high-water mark, the
 * heap in use and the instructions executed, so the host can report
 * SRAM = .data + .bss + heap + stack.
 *
 * Instruction counting: QEMU runs with `-icount shift=MT_ICOUNT_SHIFT`; under -icount its
 * minstret/minstreth counters read the virtual time in ns, 2^shift per instruction, so
 * instructions = minstret >> MT_ICOUNT_SHIFT, exactly.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "mt_target.h"

#ifndef MT_ICOUNT_SHIFT
#define MT_ICOUNT_SHIFT 6
#endif

/* ---- instruction counter ---- */
static uint64_t mt_instret(void)
{
    uint32_t hi, lo, hi2;
    do {
        __asm volatile(".option push\n\t.option arch, +zicsr\n\tcsrr %0, minstreth\n\t.option pop" : "=r"(hi));
        __asm volatile(".option push\n\t.option arch, +zicsr\n\tcsrr %0, minstret\n\t.option pop" : "=r"(lo));
        __asm volatile(".option push\n\t.option arch, +zicsr\n\tcsrr %0, minstreth\n\t.option pop" : "=r"(hi2));
    } while (hi != hi2);
    return ((uint64_t)hi << 32) | lo;
}

static uint64_t mt_instret_at_start;

/* Instructions executed since start-up (see the top comment). */
uint64_t mt_target_instructions(void)
{
    return (mt_instret() - mt_instret_at_start) >> MT_ICOUNT_SHIFT;
}

/* ---- faults ---- */
void mt_trap_handler(void) __attribute__((interrupt("machine"), aligned(4)));
void mt_trap_handler(void)
{
    /* picolibc's stderr is the semihosting console (its write(2, ...) is not) */
    fputs("microtrain: fault or unexpected trap\n", stderr);
    fflush(stderr);
    _exit(101);
}

__attribute__((constructor(101))) static void mt_startup(void)
{
    uint32_t *sp;
    __asm volatile(".option push\n\t.option arch, +zicsr\n\tcsrw mtvec, %0\n\t.option pop"
                   :: "r"((uintptr_t)&mt_trap_handler));
    /* Paint from the heap start up to just below our own frame. */
    __asm volatile("mv %0, sp" : "=r"(sp));
    mt_target_paint(sp);
    atexit(mt_target_report);
    mt_instret_at_start = mt_instret();
}
