"""The compiler pipeline: int8 graph + UpdateScheme -> scheduled training graph + memory plan.

``compile_training`` runs the passes below in order; each is a plain function of one file,
the verifier runs after each, each optional pass can be switched off in
``CompileOptions``, and each logs one debug line with its effect (logger
``microtrain.compiler``; ``microtrain compile -v`` shows them): the node count, and the last
line the one memory plan of the step. The planner runs once per compile; only
``measure_passes`` (set by ``compile -v``) plans after every pass as well, to report each
pass's effect on the peak.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable

import numpy as np

from microtrain.compiler.build_training_graph import CompileError, build_training_graph
from microtrain.compiler.differentiate import differentiate
from microtrain.compiler.fuse_frozen_blocks import fuse_frozen_blocks
from microtrain.compiler.hoist_masks import hoist_masks
from microtrain.compiler.insert_updates import insert_updates
from microtrain.compiler.plan_memory import MemoryPlan, plan_memory
from microtrain.compiler.prune_frozen import prune_frozen
from microtrain.compiler.reorder_updates import reorder_updates
from microtrain.compiler.slice_subtensor import slice_subtensor
from microtrain.compiler.split_bands import split_bands
from microtrain.compiler.split_trained_rows import split_trained_rows
from microtrain.compiler.stream_block_grads import stream_block_grads
from microtrain.compiler.stream_input import stream_input
from microtrain.ir.graph import Graph
from microtrain.ir.verify import verify_graph
from microtrain.runtime.grad_quant import GRAD_DTYPES
from microtrain.scheme import UpdateScheme

log = logging.getLogger("microtrain.compiler")


DEVICE_LR = 0.003
"""The default base learning rate of on-device training (batch 1, warm-up + cosine), the one home
of that fact: 0.01 diverges on the README tour (mbv2-w0.35 and proxyless-w0.3 on Fashion-MNIST,
300 host steps: stopped by the divergence watch at steps 11 and 36), 0.003 learns on all three zoo
models and the default CNN (docs/RESULTS.md, "Default learning rate of on-device training")."""


@dataclasses.dataclass(frozen=True)
class CompileOptions:
    prune: bool = True          # dead-code elimination of the training graph
    slice: bool = True          # sub-tensor updates: only kept channels' gradients and inputs
    ram_rows: bool = True       # a sub-tensor-updated weight keeps only its kept rows in RAM
    masks: bool = True          # 1-bit clamp masks instead of saved int8 outputs
    reorder: bool = True        # apply each update as soon as its gradient exists
    per_channel: bool = True    # with reorder: compute/apply/free one output channel's gradient at a time
    stream_grads: bool = True   # the backward through an inverted-bottleneck block runs channel by channel
    fuse_blocks: bool = True    # frozen inverted-bottleneck blocks run row by row (one fused node each)
    bands: bool = True          # run the leading high-resolution convs band by band when that lowers the peak
    stream_input: bool = False  # the first fused block pulls input rows through a callback (no input buffer)
    rounding: str = "stochastic"  # update rounding: stochastic (the default everywhere) | nearest
    seed: int = 0               # stochastic rounding seed (the generated code can override it)
    qas: bool = True            # quantization-aware scaling of the update
    accumulate: int = 1         # samples per update: gradients summed over K samples, then averaged
    momentum: float = 0.0       # SGD momentum (0: none; else one fp32 buffer per trained element)
    lr: float = DEVICE_LR       # base learning rate the generated code starts with (the driver may set it)
    lr_schedule: str = "cosine"  # cosine (linear warm-up, cosine decay) | constant
    warmup: float = 0.1         # fraction of the schedule's updates spent warming up
    steps: int = 0              # samples the schedule spans (0: unknown until run time: warm-up, then constant)
    loss: str = "cross_entropy"  # cross_entropy (classification) | mse (autoencoder reconstruction)
    grad_dtype: str = "fp32"    # conv/FC error tensors of the backward: fp32 | int16 | int8 (runtime/grad_quant.py)
    algorithm: str = "greedy_by_size"
    budget: int | None = None   # bytes; CompileError if the peak exceeds it
    measure_passes: bool = False  # re-plan after each pass to log its effect on the peak (compile -v)


@dataclasses.dataclass
class CompiledStep:
    graph: Graph
    plan: MemoryPlan
    options: CompileOptions
    log: list[str]


def _peak(g: Graph) -> int:
    return plan_memory(g).peak_bytes


MAX_ACCUMULATE = 65536
"""The largest K: the update counter is a sample counter divided by K, both uint32 on the device."""


def check_recipe(opt: CompileOptions) -> None:
    """CompileError unless the device can hold the options' training recipe."""
    from microtrain.runtime.schedule import KINDS

    if opt.lr_schedule not in KINDS:
        raise CompileError(f"learning-rate schedule {opt.lr_schedule!r} cannot run on the device; "
                           f"choose {' or '.join(KINDS)}")
    if not (isinstance(opt.accumulate, int) and 1 <= opt.accumulate <= MAX_ACCUMULATE):
        raise CompileError(f"accumulate {opt.accumulate!r} is not a number of samples the device can count; "
                           f"give an integer from 1 (no accumulation) to {MAX_ACCUMULATE}")
    if not 0.0 <= opt.momentum < 1.0:
        raise CompileError(f"momentum {opt.momentum} must be in [0, 1) (0: plain SGD)")
    if not (math.isfinite(opt.lr) and opt.lr > 0 and math.isfinite(float(np.float32(opt.lr)))):
        raise CompileError(f"learning rate {opt.lr} must be a positive float32")
    if not 0.0 <= opt.warmup < 1.0:
        raise CompileError(f"warm-up {opt.warmup} must be a fraction of the schedule in [0, 1)")
    if opt.loss == "mse" and opt.stream_input:
        raise CompileError("--loss mse compares the output with the whole input, which --stream-input never holds; "
                           "compile without --stream-input")
    if opt.grad_dtype not in GRAD_DTYPES:
        raise CompileError(f"grad dtype {opt.grad_dtype!r} is not one of {', '.join(GRAD_DTYPES)}")
    if not (isinstance(opt.steps, int) and 0 <= opt.steps < 2**32):
        raise CompileError(f"steps {opt.steps!r} must be a sample count in [0, 2^32) (0: set at run time)")


def schedule_updates(steps: int, accumulate: int, warmup: float) -> tuple[int, int]:
    """(warm-up updates, total updates) of a schedule over ``steps`` samples: the one formula the
    generated code's defaults, ``microtrain run`` and the simulator's ``TrainConfig`` all use."""
    total = steps // accumulate
    return int(warmup * total), total


def compile_training(graph: Graph, scheme: UpdateScheme, options: CompileOptions | None = None) -> CompiledStep:
    opt = options or CompileOptions()
    check_recipe(opt)
    passes: list[tuple[str, bool, Callable[[Graph], Graph], str]] = [
        # forward + DEQUANTIZE(logits) + softmax cross-entropy; inputs label, lr; trained tensors
        ("build_training_graph", True,
         lambda g: build_training_graph(g, scheme, opt.rounding, opt.seed, opt.qas, opt.accumulate, opt.momentum,
                                       opt.loss),
         "nodes"),
        # backward from the loss toward the trained tensors only (VJP rule table)
        ("differentiate", True, lambda g: differentiate(g, opt.grad_dtype), "nodes"),
        # SGD+QAS update of each trained tensor, after the whole backward (optimizer.step position)
        ("insert_updates", True, insert_updates, "peak"),
        # drop nodes and tensors no update and no output needs
        ("prune_frozen", opt.prune, prune_frozen, "peak"),
        # weight gradients and saved inputs restricted to the kept output channels
        ("slice_subtensor", opt.slice, slice_subtensor, "peak"),
        # partially trained weights: kept rows in RAM, frozen rows stay const in flash
        ("split_trained_rows", opt.ram_rows, split_trained_rows, "peak"),
        # clamp masks computed in the forward: 1 bit per element kept instead of the int8 output
        ("hoist_masks", opt.masks, hoist_masks, "peak"),
        # each update right after its gradient (per output channel), gradients freed at once
        ("reorder_updates", opt.reorder, lambda g: reorder_updates(g, opt.per_channel), "peak"),
        # frozen blocks (no update, no gradient through them): expansion rows streamed through a ring
        ("fuse_frozen_blocks", opt.fuse_blocks, fuse_frozen_blocks, "peak"),
        # leading convs whose outputs the backward never reads run one band of rows at a time
        ("split_bands", opt.bands, split_bands, "peak"),
        # opt-in: the input image is delivered row by row to the first fused block, never stored whole
        ("stream_input", opt.stream_input, stream_input, "peak"),
        # backward of expand -> depthwise -> project one expanded channel at a time (two planes, not two tensors)
        ("stream_block_grads", opt.stream_grads, stream_block_grads, "peak"),
    ]
    lines = []
    g = graph
    for name, enabled, fn, measure in passes:
        if not enabled:
            lines.append(f"{name}: off")
            log.debug(lines[-1])
            continue
        peak = opt.measure_passes and (measure == "peak" or name == "insert_updates")
        before = _peak(g) if peak and name != "insert_updates" else len(g.nodes)
        g = verify_graph(fn(g))
        if not peak or name == "insert_updates":
            lines.append(f"{name}: nodes {before} -> {len(g.nodes)}"
                         + (f", peak {_peak(g) / 1024:.1f} KB" if peak else ""))
        else:
            lines.append(f"{name}: peak {before / 1024:.1f} KB -> {_peak(g) / 1024:.1f} KB")
        log.debug(lines[-1])
    plan = plan_memory(g, opt.algorithm)  # the one plan of the step (without measure_passes)
    lines.append(f"plan_memory ({opt.algorithm}): arena {plan.no_reuse_bytes / 1024:.1f} KB without reuse -> "
                 f"{plan.arena_bytes / 1024:.1f} KB, peak {plan.peak_bytes / 1024:.1f} KB")
    log.debug(lines[-1])
    if opt.budget is not None and plan.peak_bytes > opt.budget:
        bd = plan.peak_breakdown()
        parts = ", ".join(f"{k} {v / 1024:.1f} KB" for k, v in bd.items() if k != "at_step" and v)
        state = (f"; the optimizer state (accumulation over {opt.accumulate} samples, momentum {opt.momentum:g}) "
                 f"alone takes {plan.state_bytes / 1024:.1f} KB: --accumulate 1 and no --momentum need none"
                 if plan.state_bytes else "")
        raise CompileError(f"peak memory {plan.peak_bytes / 1024:.1f} KB exceeds the budget "
                           f"{opt.budget / 1024:.1f} KB ({parts}); update fewer or later layers or lower "
                           f"their ratios{'' if opt.reorder else ', or enable --reorder'}{state}")
    return CompiledStep(g, plan, opt, lines)


def compile_inference(graph: Graph, algorithm: str = "greedy_by_size", bands: bool = True,
                      fuse_blocks: bool = True, stream: bool = False) -> MemoryPlan:
    """Memory plan of the int8 forward alone (what inference on the device needs); ``stream``:
    the input is streamed into the first fused block (``stream_input``), not planned."""
    g = verify_graph(graph)
    g = verify_graph(fuse_frozen_blocks(g)) if fuse_blocks else g
    g = split_bands(g) if bands else g
    return plan_memory(verify_graph(stream_input(g)) if stream else g, algorithm)
