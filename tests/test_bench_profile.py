"""benchmarks/host_profile.py and engine_vs_framework.py harness logic (no valgrind, no torch run).

The parsers are pinned to callgrind_annotate's real line format, including code inlined from
a header (listed under the header's path with the enclosing function's name), so the groups
always sum to the total; the C driver is compiled against a fake generated project to pin it
to the compiler contract (mt_model.h API) and its output to the parser.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_tool

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import engine_vs_framework as evf  # noqa: E402
import host_profile as hp  # noqa: E402

ANNOTATE = """\
--------------------------------------------------------------------------------
315,988,796 (100.0%)  PROGRAM TOTALS
--------------------------------------------------------------------------------
Ir                   file:function
--------------------------------------------------------------------------------
63,077,328 (19.96%)  /p/runtime/src/forward/mt_inverted_bottleneck_s8.c:mt_inverted_bottleneck_s8 [/p/hp/hp_0]
51,794,062 (16.39%)  /p/runtime/src/backward/mt_conv2d_grad_input_f32.c:mt_conv2d_grad_input_f32 [/p/hp/hp_0]
13,473,792 ( 4.26%)  /p/runtime/src/forward/mt_inverted_bottleneck_s8.c:mt_nn_ib_store.isra.0 [/p/hp/hp_0]
11,728,284 ( 3.71%)  /p/runtime/include/mt_nn.h:mt_nn_ib_store.isra.0
34,450,990 (10.90%)  /p/runtime/src/quant/mt_requantize.c:mt_requantize [/p/hp/hp_0]
 1,416,800 ( 0.45%)  /p/runtime/src/update/mt_sgd_update_s8.c:mt_sgd_update_s8 [/p/hp/hp_0]
 1,145,030 ( 0.36%)  /p/runtime/include/mt_nn.h:mt_sgd_update_s8
   398,130 ( 0.13%)  ./string/memset-vec.S:__memset_avx2_unaligned_erms [/usr/lib/libc.so.6]
    47,662 ( 0.02%)  /p/src/mt_model.c:run_train [/p/hp/hp_0]
   999,000 ( 0.30%)  ???:0x000000000badc0de [???]
"""


def test_parse_annotate_and_groups_sum_to_the_listed_total():
    cost = hp.parse_annotate(ANNOTATE)
    assert ("/p/runtime/include/mt_nn.h", "mt_nn_ib_store.isra.0") in cost  # "( 3.71%)": space inside parens
    assert not any("PROGRAM" in path for path, _fn in cost)
    groups, per_fn = hp.group_costs(cost)
    assert sum(groups.values()) == sum(cost.values())
    # inlined header code goes to the enclosing function's family; .isra clones merge with their base
    assert per_fn["mt_nn_ib_store"] == 13_473_792 + 11_728_284
    assert groups["forward int8"] == 63_077_328 + 13_473_792 + 11_728_284 + 34_450_990
    assert groups["backward fp32"] == 51_794_062
    assert groups["update"] == 1_416_800 + 1_145_030
    assert groups["other"] == 398_130 + 47_662 + 999_000


@pytest.mark.parametrize(("path", "fn", "group"), [
    ("/x/runtime/src/forward/mt_add_s8.c", "mt_add_s8", "forward int8"),
    ("/x/runtime/src/quant/mt_requantize.c", "mt_requantize", "forward int8"),
    ("/x/runtime/src/quant/mt_round_update.c", "mt_round_update", "update"),
    ("/x/runtime/src/backward/mt_apply_mask_f32.c", "mt_apply_mask_f32", "backward fp32"),
    ("/x/src/mt_model.c", "mt_train_step", "other"),
    ("/lib/libm.so.6", "expf", "other"),
])
def test_family(path, fn, group):
    assert hp.family(path, fn) == group


def test_parse_run_and_tables():
    out = "step 0 loss 1.688248 bits 3fd81884 ms 4158.0655\nstep 1 loss 2.1 bits 40066666 ms 12.5\n" \
          "weights_fnv bb4dc4a79307011e\n"
    bits, ms, digest = hp.parse_run(out)
    assert bits == ["3fd81884", "40066666"] and ms == [4158.0655, 12.5] and digest == "bb4dc4a79307011e"
    with pytest.raises(ValueError):
        hp.parse_run("step 0 loss 1 bits 3fd81884 ms 1\n")  # no weights hash: the run did not finish
    row = {"project": "m s", "flags": "-O2", "total": 200.0, "fused": 50.0, "median_ms": 3.25,
           "groups": {"forward int8": 100.0, "backward fp32": 60.0, "update": 30.0, "other": 10.0},
           "functions": {"a": 120.0, "b": 80.0}, "bit_identical": False}
    text = hp.tables([row])
    assert "| m s | -O2 | 0.0 | 0.0 (50%) | 0.0 (30%) | 0.0 (15%) | 0.0 (5%) | 0.0 (25%) | 3.2 | NO |" in text
    assert "a 60%, b 40%" in text


def test_by_object_and_total(tmp_path):
    ann = tmp_path / "cg.out"
    ann.write_text("events: Ir\nsummary: 1234\n")
    assert evf.total_instructions(ann) == 1234
    lines = ["1,000 (50.0%)  ???:at::native::foo [/v/lib/python3.11/site-packages/torch/lib/libtorch_cpu.so]",
             "  600 (30.0%)  ???:0x0000000004a3b000 [???]", "  400 (20.0%)  ???:_PyEval_EvalFrameDefault "
             "[/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0]", "2,000 (100.0%)  PROGRAM TOTALS"]
    counts = evf.objects_from_annotate("\n".join(lines))
    assert counts == {"libtorch_cpu.so": 1000, "???": 600, "libpython3.11.so.1.0": 400}


def test_engine_table_ratio():
    rows = [{"model": "m", "scheme": "m/99kb", "microtrain": {"toggle_per_step": 2e8, "diff_per_step": 2.01e8},
             "torch": {"diff_per_step": 5e8, "objects": {"libtorch_cpu.so": 4e8, "libpython": 1e8}}}]
    line = evf.table(rows).splitlines()[-1]
    assert "| 200.0 | 201.0 | 500.0 | 2.50x | libtorch_cpu.so 80%, libpython 20% |" in line


@pytest.mark.host_c
def test_driver_compiles_against_the_contract_and_prints_what_parse_run_reads(tmp_path):
    require_tool("gcc", "gcc")
    proj = tmp_path / "proj"
    (proj / "include").mkdir(parents=True)
    (proj / "runtime" / "include").mkdir(parents=True)
    (proj / "src").mkdir()
    (proj / "include" / "mt_model.h").write_text(
        "#include <stdint.h>\n#define MT_INPUT_BYTES 4\n#define MT_NUM_CLASSES 3\n#define MT_NUM_TRAINABLE 1\n"
        "typedef struct { const char *name; void *data; uint32_t bytes; } mt_tensor_ref;\n"
        "extern const mt_tensor_ref mt_trainable[];\nvoid mt_init(void);\n"
        "void mt_set_schedule(int32_t kind, float base_lr, uint32_t warmup, uint32_t total);\n"
        "float mt_train_step(const int8_t *input, int32_t label);\n")
    (proj / "src" / "fake.c").write_text(
        '#include "mt_model.h"\nstatic int8_t w[2];\nconst mt_tensor_ref mt_trainable[] = {{"w", w, 2}};\n'
        "static float lr;\nvoid mt_init(void) { w[0] = 1; w[1] = 2; }\n"
        "void mt_set_schedule(int32_t kind, float base_lr, uint32_t warmup, uint32_t total) {\n"
        "    (void)kind; (void)warmup; (void)total; lr = base_lr; }\n"
        "float mt_train_step(const int8_t *input, int32_t label) {\n"
        "    w[0] = (int8_t)(w[0] + input[0] + label); return lr * 100.0f; }\n")
    exe = hp.build(proj, ("-O2",), tmp_path / "drv")
    out = subprocess.run([str(exe), "3"], capture_output=True, text=True, check=True).stdout
    bits, ms, digest = hp.parse_run(out)
    assert bits == ["3f800000"] * 3  # 0.01f * 100 == 1.0f
    assert len(ms) == 3 and len(digest) == 16
    again = hp.parse_run(subprocess.run([str(exe), "3"], capture_output=True, text=True, check=True).stdout)
    assert again[2] == digest  # deterministic inputs -> same trained weights
