"""What every peer runner shares: the architecture spec, the published schemes, the memory measure.

Deliberately imports no framework (and not microtrain): each runner imports exactly one
framework, so the memory it measures is that framework's and nothing else's.

Architecture spec (JSON, written by ``benchmarks/peers.py`` from a zoo file)::

    {"model": "mbv2-w0.35", "input_hw": [128, 128], "channels": 3, "num_classes": 10,
     "blocks": [{"convs": [conv, ...], "residual": bool}, ...], "head_in": 112}
    conv = {"index": i, "name": "blocks.3.depthwise", "cin", "cout", "k", "stride", "groups", "relu6"}

``index`` counts convs from the input (0 = first_conv), as the zoo README's layer indices do.
``relu6`` is read from the zoo's folded output range (y_zero == -128 means the output was
clamped at 0, i.e. ReLU6 folded in); projections (pointwise2) are linear.

Memory measure (the same for every row; see ``measure_steps``): peak RSS of the process
during the measured training steps (VmHWM, reset after the warm-up by writing "5" to
/proc/self/clear_refs) minus the RSS after importing the framework and building the model.
"""

from __future__ import annotations

import gc
import json
import math
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# Published sparse-update schemes (10-class head), from the zoo README:
# budget -> (n_bias, weight layer indices, ratios). The classifier is always trained.
PUBLISHED_SCHEMES: dict[str, tuple[int, tuple[int, ...], tuple[float, ...]]] = {
    "mcunet-5fps/49kb": (20, (23, 24, 27, 30, 33, 39), (0, .25, .5, .5, 0, 0)),
    "mcunet-5fps/99kb": (22, (21, 24, 27, 30, 36, 39), (1, 1, 1, 1, .125, .25)),
    "mcunet-5fps/148kb": (23, (21, 24, 27, 30, 36, 39), (1, 1, 1, 1, 1, .5)),
    "mbv2-w0.35/99kb": (25, (27, 30, 33, 36, 39, 42, 45, 48), (1, 1, 1, 1, 1, .125, .5, 1)),
    "mbv2-w0.35/138kb": (34, (27, 30, 33, 36, 39, 42, 45, 48), (1,) * 8),
    "proxyless-w0.3/98kb": (25, (36, 39, 42, 45, 48, 51, 54, 57), (1, .5, 1, 1, .25, .5, 1, 1)),
    "proxyless-w0.3/148kb": (45, (36, 39, 42, 45, 48, 51, 54, 57), (1,) * 8),
}
# The ~100 KB-class scheme of each model: the one the Cortex-M issue must fit in 256 KB.
DEFAULT_SCHEME = {"mbv2-w0.35": "mbv2-w0.35/99kb", "proxyless-w0.3": "proxyless-w0.3/98kb",
                  "mcunet-5fps": "mcunet-5fps/99kb"}


# --- architecture ------------------------------------------------------------------------
def _conv_spec(index: int, name: str, conv: dict) -> dict:
    k = conv["kernel_size"]
    k = int(k[0]) if isinstance(k, (tuple, list)) else int(k)
    return {"index": index, "name": name, "cin": int(conv["in_channel"]), "cout": int(conv["out_channel"]),
            "k": k, "stride": int(conv["stride"]), "groups": int(conv["groups"]),
            "relu6": int(conv["params"]["y_zero"]) == -128}


def arch_from_zoo(zoo: dict, model: str, num_classes: int = 10, resolution: int = 128) -> dict:
    """The framework-neutral architecture of a zoo model (a dict as the safe unpickler returns it)."""
    blocks = [{"convs": [_conv_spec(0, "first_conv", zoo["first_conv"])], "residual": False}]
    index = 1
    for b, block in enumerate(zoo["blocks"]):
        convs = []
        for role in ("pointwise1", "depthwise", "pointwise2"):
            if block.get(role) is not None:
                convs.append(_conv_spec(index, f"blocks.{b}.{role}", block[role]))
                index += 1
        blocks.append({"convs": convs, "residual": block.get("residual") is not None})
    return {"model": model, "input_hw": [resolution, resolution], "channels": int(zoo["first_conv"]["in_channel"]),
            "num_classes": int(num_classes), "blocks": blocks, "head_in": int(zoo["classifier"]["in_channel"])}


def zoo_float_weights(zoo: dict) -> dict[str, np.ndarray]:
    """Dequantized conv weights/biases of a zoo model: ``w{i}`` (OIHW fp32) and ``b{i}`` per conv index.

    The peers train the pretrained network (well-conditioned activations and gradients, as a
    user fine-tuning it would) rather than a random initialisation; the new 10-class head is
    each framework's own initialisation.
    """
    import numpy as np

    convs = [zoo["first_conv"]] + [blk[role] for blk in zoo["blocks"]
                                   for role in ("pointwise1", "depthwise", "pointwise2") if blk.get(role) is not None]
    out = {}
    for i, conv in enumerate(convs):
        p = conv["params"]
        s_w = np.asarray(p["w_scales"], dtype=np.float64).reshape(-1)
        out[f"w{i}"] = (np.asarray(p["weight"], np.float64) * s_w[:, None, None, None]).astype(np.float32)
        out[f"b{i}"] = (np.asarray(p["bias"], np.float64) * s_w * float(p["x_scale"])).astype(np.float32)
    return out


def all_convs(arch: dict) -> list[dict]:
    return [c for block in arch["blocks"] for c in block["convs"]]


def scheme_plan(arch: dict, preset: str) -> dict[int, dict]:
    """conv index -> {"bias": bool, "weight_ratio": float, "weight_channels": k} for a published scheme.

    Sub-tensor updates keep the first ``ceil(ratio * cout)`` output channels (as the device
    slices them); which channels does not change memory or time.
    """
    if preset not in PUBLISHED_SCHEMES:
        raise KeyError(f"unknown scheme {preset!r}; known: {', '.join(PUBLISHED_SCHEMES)}")
    n_bias, idx, ratios = PUBLISHED_SCHEMES[preset]
    convs = all_convs(arch)
    plan = {c["index"]: {"bias": False, "weight_ratio": 0.0, "weight_channels": 0} for c in convs}
    for c in convs[len(convs) - n_bias:]:
        plan[c["index"]]["bias"] = True
    for i, r in zip(idx, ratios, strict=True):
        if r > 0:
            cout = convs[i]["cout"]
            plan[i]["weight_ratio"] = float(r)
            plan[i]["weight_channels"] = max(1, min(cout, math.ceil(cout * r - 1e-9)))
    return plan


# --- memory ------------------------------------------------------------------------------
def parse_status_kb(text: str, key: str) -> int:
    """A ``VmXXX:   1234 kB`` field of /proc/<pid>/status, in KiB."""
    m = re.search(rf"^{re.escape(key)}:\s+(\d+)\s+kB\s*$", text, re.MULTILINE)
    if m is None:
        raise ValueError(f"no {key} line in /proc status text")
    return int(m.group(1))


def status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        return parse_status_kb(f.read(), key)


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssSampler:
    """Fallback peak tracker when clear_refs is refused: samples VmRSS every ``period`` s."""

    def __init__(self, period: float = 0.0005) -> None:
        self.period, self.peak, self._stop = period, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, status_kb("VmRSS"))
            time.sleep(self.period)

    def __enter__(self) -> RssSampler:
        self.peak = status_kb("VmRSS")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, status_kb("VmRSS"))


def measure_steps(step: Callable[[], float], warmup: int, steps: int) -> dict:
    """Run ``warmup`` then ``steps`` training steps; memory and time as defined in the module doc.

    ``step`` must return only when the step's work is done (a Python float loss forces that in
    every framework used here).
    """
    gc.collect()
    rss_build = status_kb("VmRSS")
    losses = [step() for _ in range(warmup)]
    gc.collect()
    times = []
    if reset_peak_rss():
        method = "VmHWM after clear_refs reset"
        for _ in range(steps):
            t0 = time.perf_counter()
            losses.append(step())
            times.append((time.perf_counter() - t0) * 1e3)
        peak = status_kb("VmHWM")
    else:
        method = "VmRSS sampled every 0.5 ms (clear_refs refused)"
        with RssSampler() as sampler:
            for _ in range(steps):
                t0 = time.perf_counter()
                losses.append(step())
                times.append((time.perf_counter() - t0) * 1e3)
        peak = sampler.peak
    return {"rss_build_kb": rss_build, "peak_rss_kb": peak, "delta_kb": peak - rss_build,
            "median_ms": statistics.median(times), "times_ms": [round(t, 3) for t in times],
            "first_loss": float(losses[0]), "last_loss": float(losses[-1]), "peak_method": method}


# --- runner plumbing ---------------------------------------------------------------------
def runner_args(argv: list[str] | None = None):
    import argparse

    p = argparse.ArgumentParser(description="one framework's training step: memory and time (JSON on stdout)")
    p.add_argument("--arch", required=True, help="architecture spec JSON written by benchmarks/peers.py")
    p.add_argument("--weights", default="", help="npz of pretrained conv weights (w{i} OIHW, b{i}); default: random")
    p.add_argument("--mode", choices=("full", "sparse"), default="full")
    p.add_argument("--scheme", default="", help="published scheme preset for --mode sparse, e.g. mbv2-w0.35/99kb")
    p.add_argument("--bn", action="store_true", help="BatchNorm (training mode) after every conv, convs without bias")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    args = p.parse_args(argv)
    args.arch_spec = json.loads(Path(args.arch).read_text())
    if args.mode == "sparse" and args.bn:
        p.error("--mode sparse trains the BN-folded graph (conv biases); it cannot be combined with --bn")
    if args.mode == "sparse" and not args.scheme:
        args.scheme = DEFAULT_SCHEME[args.arch_spec["model"]]
    return args


def fixed_input(arch: dict, layout: str):
    """The same image for every framework: seeded uniform [-1, 1], batch 1; label 3."""
    import numpy as np

    h, w = arch["input_hw"]
    x = np.random.default_rng(0).uniform(-1.0, 1.0, size=(1, h, w, arch["channels"])).astype(np.float32)
    if layout == "NCHW":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x, 3


def load_weights(path: str) -> dict | None:
    if not path:
        return None
    import numpy as np

    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def emit(result: dict) -> None:
    """The runner's one JSON line on stdout (the orchestrator reads the last line)."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
