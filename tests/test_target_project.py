"""Project-level build/run of the Cortex-M7 target on a small hand-written project with the
layout and driver protocol of the compiler contract (include/mt_model.h, src/, main/mt_main.c,
step/eval lines, mt_weights.bin). Checks: training output and weights equal the host build's
bit for bit, per-step instruction counts are reported and deterministic, memory breakdown."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import require_tool

from microtrain.cli.common import UserError
from microtrain.targets import cortex_m7

pytestmark = pytest.mark.target

MODEL_H = r"""
#ifndef MT_MODEL_H
#define MT_MODEL_H
#include <stdint.h>
#define MT_INPUT_BYTES 16
#define MT_NUM_CLASSES 4
#define MT_NUM_TRAINABLE 1
#define MT_ARENA_BYTES 64
typedef struct { const char *name; void *data; uint32_t bytes; } mt_tensor_ref;
extern const mt_tensor_ref mt_trainable[];
void mt_init(void);
int mt_infer(const int8_t *input, int8_t *logits);
void mt_set_schedule(int32_t kind, float base_lr, uint32_t warmup, uint32_t total);
float mt_train_step(const int8_t *input, int32_t label);
#endif
"""

MODEL_C = r"""
#include <math.h>
#include "mt_model.h"
float mt_trainable_w[MT_NUM_CLASSES * MT_INPUT_BYTES] = {0.01f, -0.02f, 0.03f};
static float mt_arena[MT_NUM_CLASSES * 4];
const mt_tensor_ref mt_trainable[] = {{"w", mt_trainable_w, sizeof mt_trainable_w}};
void mt_init(void) {}
static void logits_f(const int8_t *x, float *z) {
    for (int o = 0; o < MT_NUM_CLASSES; o++) {
        float acc = 0.0f;
        for (int i = 0; i < MT_INPUT_BYTES; i++)
            acc = acc + mt_trainable_w[o * MT_INPUT_BYTES + i] * (float)x[i] / 128.0f;
        z[o] = acc;
    }
}
int mt_infer(const int8_t *x, int8_t *logits) {
    float *z = mt_arena; int best = 0;
    logits_f(x, z);
    for (int o = 0; o < MT_NUM_CLASSES; o++) {
        logits[o] = (int8_t)(z[o] > 1 ? 127 : z[o] < -1 ? -127 : z[o] * 127);
        if (z[o] > z[best]) best = o;
    }
    return best;
}
static float lr;
void mt_set_schedule(int32_t kind, float base_lr, uint32_t warmup, uint32_t total) {
    (void)kind; (void)warmup; (void)total; lr = base_lr;
}
float mt_train_step(const int8_t *x, int32_t label) {
    float *z = mt_arena, s = 0.0f, m;
    logits_f(x, z); m = z[0];
    for (int o = 1; o < MT_NUM_CLASSES; o++) if (z[o] > m) m = z[o];
    for (int o = 0; o < MT_NUM_CLASSES; o++) { z[o] = expf(z[o] - m); s = s + z[o]; }
    float loss = logf(s) - logf(z[label]);
    for (int o = 0; o < MT_NUM_CLASSES; o++) {
        float g = z[o] / s - (o == label ? 1.0f : 0.0f);
        for (int i = 0; i < MT_INPUT_BYTES; i++)
            mt_trainable_w[o * MT_INPUT_BYTES + i] -= (lr * g) * ((float)x[i] / 128.0f);
    }
    return loss;
}
"""

MAIN_C = r"""
#include <stdio.h>
#include <string.h>
#include "mt_model.h"
static int8_t x[MT_INPUT_BYTES];
int main(void) {
    unsigned steps = 0, n_eval = 0; float lr = 0.0f;
    FILE *f = fopen("mt_config.txt", "r");
    if (!f || fscanf(f, "%u %f %u", &steps, &lr, &n_eval) != 3) { printf("bad config\n"); return 3; }
    fclose(f);
    FILE *fx = fopen("mt_train_x.bin", "rb"), *fy = fopen("mt_train_y.bin", "rb");
    if (!fx || !fy) return 4;
    mt_init();
    mt_set_schedule(0, lr, 0u, 0u);
    for (unsigned i = 0; i < steps; i++) {
        int32_t y;
        if (fread(x, 1, MT_INPUT_BYTES, fx) != MT_INPUT_BYTES || fread(&y, 4, 1, fy) != 1) return 5;
        float loss = mt_train_step(x, y);
        uint32_t bits; memcpy(&bits, &loss, 4);
        printf("step %u loss %.6f bits %08lx\n", i, (double)loss, (unsigned long)bits);
    }
    fclose(fx); fclose(fy);
    fx = fopen("mt_test_x.bin", "rb"); fy = fopen("mt_test_y.bin", "rb");
    if (!fx || !fy) return 6;
    unsigned correct = 0; int8_t logits[MT_NUM_CLASSES];
    for (unsigned i = 0; i < n_eval; i++) {
        int32_t y;
        if (fread(x, 1, MT_INPUT_BYTES, fx) != MT_INPUT_BYTES || fread(&y, 4, 1, fy) != 1) return 7;
        correct += mt_infer(x, logits) == y;
    }
    printf("eval correct %u total %u\n", correct, n_eval);
    FILE *fw = fopen("mt_weights.bin", "wb");
    for (unsigned t = 0; t < MT_NUM_TRAINABLE; t++) fwrite(mt_trainable[t].data, 1, mt_trainable[t].bytes, fw);
    fclose(fw);
    return 0;
}
"""


def make_project(root: Path) -> Path:
    proj = root / "proj"
    for sub, name, text in (("include", "mt_model.h", MODEL_H), ("src", "mt_model.c", MODEL_C),
                            ("main", "mt_main.c", MAIN_C)):
        (proj / sub).mkdir(parents=True, exist_ok=True)
        (proj / sub / name).write_text(text)
    return proj


def make_workdir(root: Path, name: str, steps: int = 12, n_eval: int = 20) -> Path:
    work = root / name
    work.mkdir()
    rng = np.random.default_rng(0)
    centers = rng.integers(-100, 100, size=(4, 16))
    for split, n in (("train", steps), ("test", n_eval)):
        y = rng.integers(0, 4, size=n).astype("<i4")
        x = np.clip(centers[y] + rng.integers(-20, 20, size=(n, 16)), -128, 127).astype(np.int8)
        (work / f"mt_{split}_x.bin").write_bytes(x.tobytes())
        (work / f"mt_{split}_y.bin").write_bytes(y.tobytes())
    (work / "mt_config.txt").write_text(f"{steps} 0.5 {n_eval}\n")
    return work


@pytest.fixture
def tools():
    require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    require_tool("qemu-system-arm", "qemu-system-arm")


def test_project_trains_on_qemu_like_the_host(tmp_path, tools):
    require_tool("gcc", "gcc")
    proj = make_project(tmp_path)
    res = cortex_m7.run(proj, make_workdir(tmp_path, "qemu"))
    assert len(res.losses) == 12 and res.eval_total == 20
    assert res.losses[-1] < res.losses[0]
    # Per-step cost measured by the start-up's wrapper, deterministic across runs.
    assert len(res.step_instructions) == 12 and len(res.infer_instructions) == 20
    assert len(set(res.step_instructions)) <= 2  # same work every step (branch on the label only)
    again = cortex_m7.run(proj, make_workdir(tmp_path, "qemu2"), elf=res.elf)
    assert again.step_instructions == res.step_instructions and again.loss_bits == res.loss_bits
    # Memory: the trainable tensor and the arena are recognised by name.
    mem = res.memory
    assert mem["breakdown"]["trainable_weights"] == 4 * 16 * 4
    assert mem["breakdown"]["arena"] == 4 * 4 * 4
    assert mem["sram_bytes"] == mem["sram_static_bytes"] + mem["heap_used_bytes"] + mem["stack_high_water_bytes"]

    # Host build of the same sources, same flags for floating point: identical bits.
    host_dir = make_workdir(tmp_path, "host")
    srcs, incs = cortex_m7.project_sources(proj)
    exe = tmp_path / "host_exe"
    subprocess.run(["gcc", "-std=c99", "-O2", "-ffp-contract=off", *(f"-I{i}" for i in incs), *map(str, srcs),
                    "-lm", "-o", str(exe)], check=True, capture_output=True)
    host = subprocess.run([str(exe)], cwd=host_dir, capture_output=True, text=True, timeout=60)
    assert host.returncode == 0
    host_bits = [int(line.split()[-1], 16) for line in host.stdout.splitlines() if line.startswith("step ")]
    assert host_bits == res.loss_bits
    assert f"eval correct {res.eval_correct} total 20" in host.stdout
    assert (host_dir / "mt_weights.bin").read_bytes() == res.weights_path.read_bytes()
    w = struct.unpack("<64f", res.weights_path.read_bytes())
    assert w[0] != 0.01  # trained


def test_project_firmware_error_exit_is_reported(tmp_path, tools):
    proj = make_project(tmp_path)
    work = make_workdir(tmp_path, "bad")
    (work / "mt_config.txt").write_text("garbage\n")
    with pytest.raises(UserError, match="exited with code 3"):
        cortex_m7.run(proj, work)


def test_not_a_project(tmp_path):
    with pytest.raises(UserError, match="not a generated microtrain project"):
        cortex_m7.build(tmp_path)
