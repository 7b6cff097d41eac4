"""Write the generated C project of a compiled training step (CONTRACTS.md layout).

    DIR/include/mt_model.h   public API (mt_init, mt_infer, mt_train_step, mt_trainable, ...)
    DIR/src/mt_model.c       the arena, constants, trained tensors, the two step functions
    DIR/runtime/             copies of the runtime kernels the model calls (+ headers)
    DIR/main/mt_main.c       the portable driver (+ mt_flash_file.c/.h: its file-backed checkpoint flash)
    DIR/model.json/.npz      the int8 inference graph (so trained weights can be exported)
    DIR/training_graph.json/.npz  the final training graph the C was emitted from (verifies with
                             ``microtrain.ir`` alone: ``verify_graph(load_graph(DIR/training_graph))``)
    DIR/report.json          peak memory + breakdown, schedule, plan, trained tensors
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from microtrain import quant
from microtrain.codegen.context import CContext, c_float
from microtrain.codegen.emit_rules import EMIT_RULES
from microtrain.codegen.flash_template import FLASH_FILE_C, FLASH_FILE_H
from microtrain.codegen.main_template import MAIN_C
from microtrain.compiler.build_training_graph import forward_end
from microtrain.compiler.pipeline import CompiledStep
from microtrain.compiler.split_trained_rows import ram_rows, stored_bytes
from microtrain.ir.graph import Graph
from microtrain.ir.ops import INT8_OPS, Op
from microtrain.ir.serialize import save_graph
from microtrain.runtime import cbind

REPORT_FORMAT = "microtrain-compiled"


def _body(nodes, ctx: CContext, after: dict[str, list[str]] | None = None) -> list[str]:
    """The step function's lines, one emit rule per node; ``after`` adds lines after the node
    producing a tensor (tensor name -> lines)."""
    lines = []
    for node in nodes:
        rule = EMIT_RULES.get(node.op)
        if rule is None:
            raise NotImplementedError(f"no C emission rule for op {node.op.value} (node {node.name!r})")
        lines.append(f"    /* {node.name} ({node.op.value}) */")
        lines.extend("    " + line for line in rule(node, ctx))
        for out in node.outputs:
            lines.extend((after or {}).get(out, []))
    return lines


def _prediction(ctx: CContext, logits: str) -> list[str]:
    """The class the model predicts for the sample it is about to learn (prequential evaluation):
    the argmax of the int8 logits, taken as soon as they exist (later buffers may reuse them)."""
    return ["    /* prequential: the prediction for this sample before it is learnt */", "    {",
            "        int32_t k;", "        mt_pred = 0;", "        for (k = 1; k < MT_NUM_CLASSES; ++k) {",
            f"            if ({ctx.ptr(logits)}[k] > {ctx.ptr(logits)}[mt_pred]) mt_pred = k;", "        }", "    }"]


STREAM_HEADER = """
/* --stream-input: the input is never held whole; the first block pulls its rows, in order and
 * once each, through read_rows(dst, first_row, rows, ctx) (MT_INPUT_ROW_BYTES per row). */
#define MT_STREAM_INPUT 1
#define MT_INPUT_ROWS {rows}
#define MT_INPUT_ROW_BYTES {row_bytes}
/* Register the row reader used when mt_infer / mt_train_step get input == NULL (a non-NULL
 * input is a whole sample in memory, read row by row from there). */
void mt_set_input_reader(void (*read_rows)(int8_t *dst, int32_t first_row, int32_t rows, void *ctx), void *ctx);
int mt_infer_stream(void (*read_rows)(int8_t *dst, int32_t first_row, int32_t rows, void *ctx), void *ctx,
                    int8_t *logits);
float mt_train_step_stream(void (*read_rows)(int8_t *dst, int32_t first_row, int32_t rows, void *ctx), void *ctx,
                           int32_t label);
"""

MSE_HEADER = """
/* An autoencoder trained on its reconstruction error (compile --loss mse): mt_train_step's label
 * is unused, and the anomaly score of a sample is its reconstruction error (the mean squared error
 * between the dequantized output and the input), computed without training. */
#define MT_LOSS_MSE 1
float mt_reconstruction_error(const int8_t *input);
"""

INPUT_BUFFER_HEADER = """/* The arena's input tensor (MT_INPUT_BYTES): a driver can read a sample straight into it and
 * pass it to mt_infer / mt_train_step, which then skip their copy (no second input buffer). */
int8_t *mt_input_buffer(void);
"""


def schedule_defaults(step: CompiledStep) -> dict:
    """The learning-rate schedule compiled into the step (kind, base lr, warm-up and total updates)."""
    from microtrain.compiler.pipeline import schedule_updates

    o = step.options
    warmup, total = schedule_updates(o.steps, o.accumulate, o.warmup)
    return {"kind": o.lr_schedule, "lr": float(np.float32(o.lr)), "warmup_updates": warmup, "total_updates": total,
            "warmup_fraction": o.warmup}


def state_layout(step: CompiledStep) -> list[tuple[str, int]]:
    """What a checkpoint holds, in payload order (``mt_state``): (name, bytes) of each trained tensor
    (tensor_id order, as stored in RAM), then each optimizer buffer ("<tensor>:accum",
    "<tensor>:momentum", same order), then the sample counter ("samples", 4 bytes)."""
    trained = [t["name"] for t in step.graph.meta["training"]["trained"]]
    spans = [(n, step.plan.trainable[n]) for n in trained]
    spans += [(f"{n}:{k}", step.plan.state[f"{n}:{k}"]) for n in trained for k in ("accum", "momentum")
              if f"{n}:{k}" in step.plan.state]
    return spans + [("samples", 4)]


def model_id(step: CompiledStep) -> int:
    """32-bit identity of a compiled model for its checkpoints: the model's name, every constant
    tensor (the frozen and the initial trained values), the scheme and the state layout. A
    checkpoint written by any other model, scheme or recipe carries another id and is refused."""
    g = step.graph
    h = hashlib.sha256(json.dumps({"format": 1, "model": g.meta.get("name", ""), "layout": state_layout(step),
                                   "scheme": g.meta["training"]["scheme"]}, sort_keys=True).encode())
    for name in sorted(n for n, t in g.tensors.items() if t.is_const):
        h.update(name.encode())
        h.update(np.ascontiguousarray(g.tensors[name].data).tobytes())
    return int.from_bytes(h.digest()[:4], "little")


def model_header(step: CompiledStep, num_classes: int, input_bytes: int) -> str:
    from microtrain.runtime.schedule import KINDS

    shape = step.graph.tensors[step.graph.inputs[0]].shape
    extra = (STREAM_HEADER.format(rows=shape[1], row_bytes=shape[2] * shape[3])
             if step.graph.meta.get("stream_input") else INPUT_BUFFER_HEADER)
    if step.graph.meta["training"].get("loss") == "mse":
        extra += MSE_HEADER
    sched = schedule_defaults(step)
    o = step.options
    layout = state_layout(step)
    return f"""/* mt_model.h: generated by microtrain. Public API of the compiled training step. */
#ifndef MT_MODEL_H
#define MT_MODEL_H

#include <stdint.h>

#include "mt_flash.h"

#define MT_NUM_TRAINABLE {len(step.plan.trainable)}
#define MT_INPUT_BYTES {input_bytes}
#define MT_NUM_CLASSES {num_classes}
#define MT_ARENA_BYTES {step.plan.arena_bytes}
/* The training recipe: an update every MT_ACCUMULATE samples (gradients summed, then averaged),
 * momentum {o.momentum:g}, {o.rounding} rounding; the learning rate of each update from the schedule
 * (mt_set_schedule; compiled default below: kind 0 constant / 1 cosine with linear warm-up, base
 * rate, warm-up and total updates, total 0 = open-ended). */
#define MT_ACCUMULATE {o.accumulate}u
#define MT_LR_KIND {KINDS[sched["kind"]]}
#define MT_LR_BASE {c_float(sched["lr"])}
#define MT_LR_WARMUP {sched["warmup_updates"]}u
#define MT_LR_TOTAL {sched["total_updates"]}u

typedef struct {{
    const char *name;
    void *data;
    uint32_t bytes;
}} mt_tensor_ref;

/* The trained tensors (RAM), in tensor_id order: layers in execution order, weight before bias. */
extern const mt_tensor_ref mt_trainable[];

/* Reset the sample counter, the optimizer state and the error state (the trained tensors keep
 * their values). */
void mt_init(void);
/* int8 inference of one sample; writes the MT_NUM_CLASSES int8 outputs of the model (the logits,
 * or the int8 SOFTMAX of them when the model ends in one), returns the argmax class. */
int mt_infer(const int8_t *input, int8_t *logits);
/* Train on one sample: forward, backward, and on every MT_ACCUMULATE-th sample the update, at the
 * schedule's rate for that update; returns the loss (-1.0f on a kernel error, see mt_last_error). */
float mt_train_step(const int8_t *input, int32_t label);
/* The learning-rate schedule of the updates from now on (kind: 0 constant, 1 cosine; see
 * mt_learning_rate in mt_runtime.h), counted from update 0 of this run. */
void mt_set_schedule(int32_t kind, float base_lr, uint32_t warmup, uint32_t total);
/* Training samples seen since mt_init (mt_train_step calls). */
uint32_t mt_samples_seen(void);
/* The class the model predicted for the last training sample before learning from it (the argmax
 * of the logits of mt_train_step's forward pass): prequential evaluation at no extra cost. */
int mt_last_prediction(void);
{extra}
/* Checkpoints of the trained state in flash (mt_flash.h: a driver of three callbacks, two slots,
 * sequence numbers, CRC; a reset at any instant leaves the previous or the new checkpoint). The
 * state is MT_NUM_STATE spans (mt_state): the trained tensors, the optimizer state, the sample
 * counter; MT_MODEL_ID names this model, scheme and recipe, so another's checkpoint is refused. */
#define MT_MODEL_ID 0x{model_id(step):08x}u
#define MT_STATE_BYTES {sum(b for _, b in layout)}u
#define MT_NUM_STATE {len(layout)}
extern const mt_state_span mt_state[];
/* Save the state as a new checkpoint; returns an mt_checkpoint_status (MT_CKPT_OK = 0). */
int32_t mt_save_state(const mt_flash *flash, mt_checkpoint_info *info);
/* Load the newest valid checkpoint of this model: MT_CKPT_OK, or MT_CKPT_EMPTY if there is none
 * (the state is untouched; info->status says why each slot was not used), or a negative status. */
int32_t mt_restore_state(const mt_flash *flash, mt_checkpoint_info *info);
/* Seed of stochastic rounding (default {step.options.seed}); unused with nearest rounding. */
void mt_set_seed(uint32_t seed);
/* 0, or the mt_status of the kernel that failed in the last call. */
int mt_last_error(void);

#ifdef MT_DEBUG_ARENA
/* Fill the arena with a byte; after a step, 1 + the highest offset whose byte differs (0: none). */
void mt_debug_arena_fill(uint8_t value);
uint32_t mt_debug_arena_high_water(uint8_t value);
#endif

#endif /* MT_MODEL_H */
"""


def model_source(step: CompiledStep, packs: str = "full") -> tuple[str, set[str], dict[str, str]]:
    g = step.graph
    ctx = CContext(g, step.plan, packs)
    info = g.meta["training"]
    fwd = forward_end(g)
    infer_nodes = [n for n in g.nodes[:fwd] if n.op in INT8_OPS]
    infer = _body(infer_nodes, ctx)
    x, logits = g.inputs[0], info["logits"]
    mse = info.get("loss") == "mse"
    train = _body(g.nodes, ctx, {} if mse else {logits: _prediction(ctx, logits)})
    score_ops = INT8_OPS | {Op.DEQUANTIZE, Op.MEAN_SQUARED_ERROR}
    score = _body([n for n in g.nodes[:fwd] if n.op in score_ops], ctx) if mse else []
    output = ctx.ptr(logits)
    if info.get("softmax"):  # the model ends in an int8 SOFTMAX: inference outputs TFLM's probabilities
        lt = g.tensors[logits]
        mult, shift, diff_min = quant.softmax_params(info["softmax"]["beta"], lt.quant.s)
        fields = {"rows": 1, "size": lt.shape[-1], "input_multiplier": mult, "input_left_shift": shift,
                  "diff_min": diff_min}
        sm = ctx.struct("mt_softmax_params", "SM", info["softmax"]["name"], fields)
        infer.append(f"    MT_TRY({ctx.kernel('mt_softmax_s8')}(&{sm}, {output}, mt_outputs));")
        output = "mt_outputs"
    refs = ",\n".join(f'    {{"{t["name"]}", {ctx.param_array(t["name"])}, {ctx.stored_bytes(t["name"])}u}}'
                      for t in info["trained"])
    src = [
        "/* mt_model.c: generated by microtrain. One static arena at planned offsets; frozen weights and",
        " * every quantization constant are const (flash), trained weights/biases are RAM arrays. */",
        "#include <string.h>", "", '#include "mt_model.h"', '#include "mt_runtime.h"', "",
        "#define MT_TRY(call) do { mt_status mt_s_ = (call); if (mt_s_ != MT_OK) return mt_s_; } while (0)", "",
        "static union { uint8_t b[MT_ARENA_BYTES]; float f; int32_t i; } mt_arena;",
        "static uint32_t mt_samples; /* training samples seen */",
        "static uint32_t mt_update;  /* the update this sample belongs to: mt_samples / MT_ACCUMULATE */",
        "static int32_t mt_apply;    /* 1 on the last sample of an update (the update happens), else 0 */",
        f"static uint32_t mt_seed = {int(info['seed'])}u;", "static int mt_error;",
        "" if info.get("loss") == "mse" else
        "static int32_t mt_pred;     /* argmax of the last training sample's logits, before its update */",
        "static mt_lr_schedule mt_schedule = {MT_LR_KIND, MT_LR_BASE, MT_LR_WARMUP, MT_LR_TOTAL};", "",
    ]
    stream = bool(g.meta.get("stream_input"))
    if stream:
        src += ["static void (*mt_read)(int8_t *, int32_t, int32_t, void *);", "static void *mt_read_ctx;",
                "static void (*mt_reader)(int8_t *, int32_t, int32_t, void *);", "static void *mt_reader_ctx;",
                "", "/* rows of a whole sample in memory (mt_infer / mt_train_step with input != NULL) */",
                "static void mt_read_memory(int8_t *dst, int32_t first_row, int32_t rows, void *ctx)", "{",
                "    memcpy(dst, (const int8_t *)ctx + first_row * MT_INPUT_ROW_BYTES, "
                "(size_t)rows * MT_INPUT_ROW_BYTES);", "}", "",
                "static void mt_select_reader(const int8_t *input)", "{",
                "    mt_read = input != NULL ? mt_read_memory : mt_reader;",
                "    mt_read_ctx = input != NULL ? (void *)(uintptr_t)input : mt_reader_ctx;", "}", ""]
    src += ctx.decls + ([f"static int8_t mt_outputs[{g.tensors[logits].shape[-1]}];"] if info.get("softmax") else [])
    src += [""]
    src += ["static mt_status run_infer(void)", "{"] + infer + ["    return MT_OK;", "}", ""]
    src += ["static mt_status run_train(int32_t label, float lr)", "{", "    (void)label;"] + train + \
        ["    return MT_OK;", "}", ""]
    if mse:  # the anomaly score: the forward pass and the reconstruction loss, no backward
        src += ["static mt_status run_score(void)", "{"] + score + ["    return MT_OK;", "}", "",
                "float mt_reconstruction_error(const int8_t *input)", "{", "    mt_status st;",
                _take_input(ctx, x, stream), "    st = run_score();", "    if (st != MT_OK) {",
                "        mt_error = (int)st;", "        return -1.0f;", "    }",
                f"    return {ctx.ptr(g.outputs[0])}[0];", "}", ""]
    ctx.kernel("mt_learning_rate")
    ctx.kernel("mt_checkpoint_save")
    ctx.kernel("mt_checkpoint_restore")
    clear = [f"    memset({sym}, 0, sizeof {sym});" for sym, _, _ in ctx.state_arrays]
    state_syms = {name: sym for sym, _, name in ctx.state_arrays}
    spans = ",\n".join(f"    {{{state_syms.get(name) or ctx.param_array(name)}, {size}u}}"
                        for name, size in state_layout(step)[:-1]) + ",\n    {&mt_samples, sizeof mt_samples}"
    src += [f"const mt_tensor_ref mt_trainable[] = {{\n{refs}\n}};", "",
            "void mt_init(void)", "{", "    mt_samples = 0;", "    mt_error = 0;", *clear, "}", "",
            "void mt_set_schedule(int32_t kind, float base_lr, uint32_t warmup, uint32_t total)", "{",
            "    mt_schedule.kind = kind;", "    mt_schedule.base_lr = base_lr;", "    mt_schedule.warmup = warmup;",
            "    mt_schedule.total = total;", "}", "",
            "uint32_t mt_samples_seen(void)", "{", "    return mt_samples;", "}", "",
            "int mt_last_prediction(void)", "{",
            "    return -1; /* an autoencoder predicts no class */" if mse else "    return (int)mt_pred;", "}", "",
            f"const mt_state_span mt_state[MT_NUM_STATE] = {{\n{spans}\n}};", "",
            "int32_t mt_save_state(const mt_flash *flash, mt_checkpoint_info *info)", "{",
            "    return mt_checkpoint_save(flash, MT_MODEL_ID, mt_state, MT_NUM_STATE, info);", "}", "",
            "int32_t mt_restore_state(const mt_flash *flash, mt_checkpoint_info *info)", "{",
            "    return mt_checkpoint_restore(flash, MT_MODEL_ID, mt_state, MT_NUM_STATE, info);", "}", "",
            "void mt_set_seed(uint32_t seed)", "{", "    mt_seed = seed;", "}", "",
            "int mt_last_error(void)", "{", "    return mt_error;", "}", "",
            *_input_api(ctx, x, stream),
            "int mt_infer(const int8_t *input, int8_t *logits)", "{",
            "    mt_status st;", "    int32_t k, best = 0;",
            "    if (input == NULL && mt_reader == NULL) {" if stream else "",
            "        mt_error = (int)MT_ERR_NULL;" if stream else "", "        return -1;" if stream else "",
            "    }" if stream else "",
            _take_input(ctx, x, stream),
            "    st = run_infer();", "    if (st != MT_OK) {", "        mt_error = (int)st;",
            "        return -1;", "    }",
            f"    memcpy(logits, {output}, MT_NUM_CLASSES);",
            "    for (k = 1; k < MT_NUM_CLASSES; ++k) {", "        if (logits[k] > logits[best]) best = k;", "    }",
            "    return (int)best;", "}", "",
            "float mt_train_step(const int8_t *input, int32_t label)", "{", "    mt_status st;",
            *([] if mse else ["    if (label < 0 || label >= MT_NUM_CLASSES) {",
                              "        mt_error = (int)MT_ERR_PARAM;", "        return -1.0f;", "    }"]),
            "    if (input == NULL && mt_reader == NULL) {" if stream else "",
            "        mt_error = (int)MT_ERR_NULL;" if stream else "", "        return -1.0f;" if stream else "",
            "    }" if stream else "",
            _take_input(ctx, x, stream),
            "    mt_update = mt_samples / MT_ACCUMULATE;",
            "    mt_apply = mt_samples % MT_ACCUMULATE == MT_ACCUMULATE - 1u;",
            "    st = run_train(label, mt_learning_rate(&mt_schedule, mt_update));", "    mt_samples++;",
            "    if (st != MT_OK) {", "        mt_error = (int)st;", "        return -1.0f;", "    }",
            f"    return {ctx.ptr(g.outputs[0])}[0];", "}", "",
            "#ifdef MT_DEBUG_ARENA", "void mt_debug_arena_fill(uint8_t value)", "{",
            "    memset(mt_arena.b, value, MT_ARENA_BYTES);", "}", "",
            "uint32_t mt_debug_arena_high_water(uint8_t value)", "{", "    uint32_t k = MT_ARENA_BYTES;",
            "    while (k > 0 && mt_arena.b[k - 1] == value) --k;", "    return k;", "}", "#endif", ""]
    symbols = {t["name"]: ctx.param_array(t["name"]) for t in info["trained"]}
    return "\n".join(src), ctx.used_kernels, symbols


def _take_input(ctx: CContext, x: str, stream: bool) -> str:
    if stream:
        return "    mt_select_reader(input);"
    return f"    if (input != {ctx.ptr(x)}) memcpy({ctx.ptr(x)}, input, MT_INPUT_BYTES);"


def _input_api(ctx: CContext, x: str, stream: bool) -> list[str]:
    if not stream:
        return ["int8_t *mt_input_buffer(void)", "{", f"    return {ctx.ptr(x)};", "}", ""]
    fn = "void (*read_rows)(int8_t *, int32_t, int32_t, void *)"
    return [f"void mt_set_input_reader({fn}, void *ctx)", "{", "    mt_reader = read_rows;",
            "    mt_reader_ctx = ctx;", "}", "",
            f"int mt_infer_stream({fn}, void *ctx, int8_t *logits)", "{",
            "    mt_set_input_reader(read_rows, ctx);", "    return mt_infer(NULL, logits);", "}", "",
            f"float mt_train_step_stream({fn}, void *ctx, int32_t label)", "{",
            "    mt_set_input_reader(read_rows, ctx);", "    return mt_train_step(NULL, label);", "}", ""]


def report(step: CompiledStep, inference_plan=None, symbols: dict | None = None) -> dict:
    g = step.graph
    info = g.meta["training"]
    plan = step.plan
    bd = plan.peak_breakdown()
    trained = []
    split = ram_rows(g)
    for t in info["trained"]:
        tt = g.tensors[t["name"]]
        rows = split.get(t["name"])  # a split weight: only its kept rows are in RAM and in mt_weights.bin
        trained.append({"name": t["name"], "layer": t["layer"], "kind": t["kind"], "dtype": tt.dtype,
                        "shape": list(tt.shape), "bytes": stored_bytes(g, t["name"], split),
                        "stored_rows": list(rows) if rows is not None else None, "channels": t["channels"],
                        "symbol": (symbols or {}).get(t["name"])})
    doc = {"format": REPORT_FORMAT, "version": 1, "model": g.meta.get("name", ""),
           "num_classes": int(g.tensors[info["logits"]].shape[1]),
           "input_shape": list(g.tensors[g.inputs[0]].shape), "input_bytes": g.tensors[g.inputs[0]].nbytes,
           "peak_bytes": plan.peak_bytes, "arena_bytes": plan.arena_bytes, "trainable_bytes": plan.trainable_bytes,
           "optimizer_state_bytes": plan.state_bytes, "optimizer_state": dict(plan.state),
           "lr_schedule": schedule_defaults(step),
           "checkpoint": {"model_id": f"{model_id(step):08x}", "state_bytes": sum(b for _, b in state_layout(step)),
                          "state": [{"name": n, "bytes": b} for n, b in state_layout(step)]},
           "breakdown": {k: v for k, v in bd.items() if k != "at_step"}, "peak_step": bd["at_step"],
           "peak_includes": "arena (input, activations, saved activations, masks, gradients, weight-gradient "
                            "buffers) + trained weights/biases in RAM + optimizer state (accumulation, momentum); "
                            "excludes stack, driver buffers, flash",
           "trainable": trained, "scheme": info["scheme"],
           "options": {k: v for k, v in vars(step.options).items()},
           "passes": step.log,
           "schedule": [{"name": n.name, "op": n.op.value} for n in g.nodes],
           "plan": [{"tensors": b.tensors, "offset": b.offset, "size": b.size, "first": b.first, "last": b.last,
                     "kind": b.kind} for b in sorted(plan.buffers, key=lambda b: b.offset)]}
    if inference_plan is not None:
        doc["inference_arena_bytes"] = inference_plan.arena_bytes
    return doc


def generate_project(step: CompiledStep, inference_graph: Graph, out_dir: str | Path,
                     inference_plan=None, packs: str = "full") -> Path:
    """Write the project to ``out_dir`` (created, or updated in place if it is a project folder).
    ``packs``: the compile-time set-up packs of the frozen convs (``codegen/context.py`` PACKS).

    Everything is generated in memory first, so a model the code generator refuses leaves no
    half-written project; ``ValueError`` when ``out_dir`` is an existing file."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is an existing file, not a folder; give a new or project folder")
    g = step.graph
    info = g.meta["training"]
    num_classes = int(g.tensors[info["logits"]].shape[1])
    source, kernels, symbols = model_source(step, packs)
    header = model_header(step, num_classes, g.tensors[g.inputs[0]].nbytes)
    doc = report(step, inference_plan, symbols)
    doc["packs"] = packs
    report_text = json.dumps(doc, indent=1, default=_json_default)
    for sub in ("include", "src", "main", "runtime/include", "runtime/src"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    (out / "include" / "mt_model.h").write_text(header)
    (out / "src" / "mt_model.c").write_text(source)
    (out / "main" / "mt_main.c").write_text(MAIN_C)
    (out / "main" / "mt_flash_file.c").write_text(FLASH_FILE_C)
    (out / "main" / "mt_flash_file.h").write_text(FLASH_FILE_H)
    shutil.rmtree(out / "runtime" / "src")
    for header in cbind.HEADERS:
        shutil.copy2(header, out / "runtime" / "include" / header.name)
    for path in cbind.sources_for(sorted(kernels)):
        dest = out / "runtime" / "src" / path.parent.name / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    save_graph(inference_graph, out / "model")
    save_graph(step.graph, out / "training_graph")  # what the device runs: loads with microtrain.ir alone
    (out / "report.json").write_text(report_text)
    return out


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(type(o).__name__)

