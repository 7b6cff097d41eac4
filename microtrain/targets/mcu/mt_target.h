/*
 * mt_target.h: what the emulated-target start-up code offers the firmware and its tests.
 *
 * mt_target_instructions(): instructions executed since start-up (QEMU -icount, exact within
 * a couple of instructions; see startup_arm.c / startup_riscv.c). The rest is used by the
 * start-up code itself (measure.c).
 */
#ifndef MT_TARGET_H
#define MT_TARGET_H

#include <stdint.h>

uint64_t mt_target_instructions(void);
void mt_target_paint(const uint32_t *sp);
void mt_target_report(void);

#endif /* MT_TARGET_H */
