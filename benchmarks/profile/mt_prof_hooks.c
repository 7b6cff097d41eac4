/*
 * mt_prof_hooks.c: self-instruction profile per function on QEMU mps2-an500 (benchmarks/kernel_profile.py).
 *
 * The runtime and model sources are compiled with -finstrument-functions; gcc calls these two hooks at
 * every instrumented function's entry and exit. Each hook reads the start-up code's instruction count
 * (mt_target_instructions(): the SysTick under -icount, microtrain/targets/mcu/startup_arm.c), charges
 * the instructions since the previous hook to the function on top of a shadow stack (its *self* count),
 * and reads it again on the way out, so the hooks' own instructions are charged to nobody (only the
 * calls into the hooks and into mt_target_instructions, a few tens of instructions, land on the
 * caller). The model and driver are not
 * instrumented, so the outermost frame is a kernel called by the model: its call site (the "anchor")
 * names the graph node every nested frame belongs to. At exit: one line per (function, call site,
 * anchor; 0 for the outermost frames), `prof <fn> <site> <anchor> <ticks hi> <ticks lo> <calls>`; the script maps addresses to names.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define MT_PROF_SLOTS 2048
#define MT_PROF_DEPTH 64
#define TIMER0_VALUE mt_target_instructions()

extern uint64_t mt_target_instructions(void);

static void *mt_prof_fn[MT_PROF_SLOTS];
static void *mt_prof_site[MT_PROF_SLOTS];
static void *mt_prof_anchor[MT_PROF_SLOTS];
static void *mt_prof_anchor_now;
static uint64_t mt_prof_ticks[MT_PROF_SLOTS];
static uint32_t mt_prof_calls[MT_PROF_SLOTS];
static int32_t mt_prof_stack[MT_PROF_DEPTH];
static int32_t mt_prof_top = -1;
static uint64_t mt_prof_last;
static int mt_prof_registered;
static uint64_t mt_prof_outside;

__attribute__((no_instrument_function)) static void mt_prof_report(void)
{
    int32_t i;
    for (i = 0; i < MT_PROF_SLOTS; ++i) {
        if (mt_prof_fn[i] != 0) {
            printf("prof %08lx %08lx %08lx %lu %lu %lu\n", (unsigned long)(uintptr_t)mt_prof_fn[i],
                   (unsigned long)(uintptr_t)mt_prof_site[i], (unsigned long)(uintptr_t)mt_prof_anchor[i],
                   (unsigned long)(mt_prof_ticks[i] >> 32), (unsigned long)(mt_prof_ticks[i] & 0xFFFFFFFFu),
                   (unsigned long)mt_prof_calls[i]);
        }
    }
    printf("prof_outside %lu %lu\n", (unsigned long)(mt_prof_outside >> 32),
           (unsigned long)(mt_prof_outside & 0xFFFFFFFFu));
}

__attribute__((no_instrument_function)) static int32_t mt_prof_slot(void *fn, void *site)
{
    void *anchor = mt_prof_anchor_now;
    uint32_t h = (((uint32_t)(uintptr_t)fn >> 1) ^ ((uint32_t)(uintptr_t)site * 31u) ^
                  ((uint32_t)(uintptr_t)anchor * 17u)) * 2654435761u;
    int32_t i = (int32_t)(h >> 21) & (MT_PROF_SLOTS - 1);
    while (mt_prof_fn[i] != 0 && (mt_prof_fn[i] != fn || mt_prof_site[i] != site || mt_prof_anchor[i] != anchor)) {
        i = (i + 1) & (MT_PROF_SLOTS - 1);
    }
    mt_prof_fn[i] = fn;
    mt_prof_site[i] = site;
    mt_prof_anchor[i] = anchor;
    return i;
}

__attribute__((no_instrument_function)) static void mt_prof_charge(uint64_t now)
{
    const uint64_t spent = now - mt_prof_last; /* instructions count up */
    if (mt_prof_top >= 0) {
        mt_prof_ticks[mt_prof_stack[mt_prof_top]] += spent;
    } else {
        mt_prof_outside += spent;
    }
}

__attribute__((no_instrument_function)) void __cyg_profile_func_enter(void *fn, void *call_site)
{
    const uint64_t now = TIMER0_VALUE;
    int32_t slot;
    if (!mt_prof_registered) {
        mt_prof_registered = 1;
        mt_prof_last = now;
        atexit(mt_prof_report);
    }
    mt_prof_charge(now);
    if (mt_prof_top < 0) {
        mt_prof_anchor_now = 0; /* an outermost frame: a kernel called by the model (anchor 0) */
        slot = mt_prof_slot(fn, call_site);
        mt_prof_anchor_now = call_site; /* the model-level call its nested frames belong to */
    } else {
        slot = mt_prof_slot(fn, call_site);
    }
    mt_prof_calls[slot]++;
    if (mt_prof_top + 1 < MT_PROF_DEPTH) {
        mt_prof_stack[++mt_prof_top] = slot;
    }
    mt_prof_last = TIMER0_VALUE;
}

__attribute__((no_instrument_function)) void __cyg_profile_func_exit(void *fn, void *call_site)
{
    const uint64_t now = TIMER0_VALUE;
    (void)fn;
    (void)call_site;
    mt_prof_charge(now);
    if (mt_prof_top >= 0) {
        --mt_prof_top;
    }
    mt_prof_last = TIMER0_VALUE;
}
