"""The divergence watch: one rule for every training path, so that a run whose loss has blown
up ends in an error naming the step instead of an exported model that scores chance.

Fed one loss per optimizer step (``LossWatch.update``), it says the run has diverged when:

1. ``non-finite``: the loss is NaN or infinite;
2. ``collapsed``: the loss has equalled ln(C) (C classes) for ``WINDOW`` steps in a row,
   after having been different before. An int8 classifier whose logits are all equal (all
   saturated, or all at the zero point) gives exactly ln(C) whatever the sample: its output no
   longer depends on the input. Healthy training never repeats ln(C) ten times;
3. ``blown-up``: more than half of the last ``WINDOW`` losses exceed ``FACTOR`` times the
   starting level max(ln C, first loss), or the mean of the last ``MEAN_WINDOW`` exceeds
   ``MEAN_FACTOR`` times it (a saturated model whose losses hover around 3-4x; at 3x over 30
   samples, an accurate model with saturated logits would need 40 % confident mistakes). Chance
   level is ln(C); a loss that far above it for most of ten steps is a model that got worse than
   guessing, not noise (a single spike, or a few, at batch 1 does not trigger it);
4. ``stuck`` (per-sample losses with their labels: the device's batch-1 runs): over the last
   ``STUCK_WINDOW`` samples the loss is a function of the label alone (every two samples of one
   label have bit-identical losses) and their mean is at least ``STUCK_MEAN`` x ln(C), after an
   earlier window in which it was not. A model whose output no longer depends on its input
   (saturated to one constant prediction) loses exactly -log p[label] on every sample; a
   healthy model's loss also depends on the image, and a confident accurate one has a mean loss
   near 0.

The generated driver carries the C twin of this rule (``codegen/main_template.py``,
``mt_watch_loss``), so host and QEMU runs stop at the same step the simulator would; the
tests feed both the same loss sequences. The simulator applies it per optimizer step
(batch-mean loss), the device per sample.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

WINDOW = 10
FACTOR = 4.0
MEAN_FACTOR = 3.0
MEAN_WINDOW = 30
STUCK_WINDOW = 30
STUCK_MEAN = 0.5
LN_C_TOLERANCE = 1e-5  # relative: float32 ln(C) from logf, torch or numpy agree far closer than this

REASONS = ("non-finite", "collapsed", "blown-up", "stuck")
"""The reasons, in the order of their codes 1, 2, 3, 4 (the C driver prints the code)."""


class TrainingDiverged(RuntimeError):
    """Training stopped because the loss diverged; ``step`` is the 0-based optimizer step."""

    def __init__(self, step: int, reason: str, detail: str) -> None:
        super().__init__(f"training diverged at step {step}: {detail}")
        self.step, self.reason, self.detail = step, reason, detail


@dataclasses.dataclass
class LossWatch:
    """State of the watch; ``update`` per step. Plain data, so a checkpoint can carry it."""

    num_classes: int
    base: float | None = None        # max(ln C, first loss)
    recent: list[bool] = dataclasses.field(default_factory=list)  # last WINDOW: loss > FACTOR * base
    values: list[float] = dataclasses.field(default_factory=list)  # last MEAN_WINDOW losses, at count % MEAN_WINDOW
    count: int = 0                   # losses that reached the blow-up rule
    flat: int = 0                    # consecutive losses equal to ln C
    moved: bool = False              # some loss differed from ln C
    ring: list[list[int]] = dataclasses.field(default_factory=list)  # last STUCK_WINDOW [loss bits, label]
    seen: int = 0                    # samples with a label so far
    varied: bool = False             # some full window's loss depended on more than the label

    @property
    def ln_c(self) -> float:
        return float(np.float32(math.log(max(self.num_classes, 2))))

    def _is_ln_c(self, loss: float) -> bool:
        return abs(loss - self.ln_c) <= LN_C_TOLERANCE * self.ln_c

    def update(self, step: int, loss: float, label: int | None = None) -> None:
        """Record the loss of ``step`` (and its sample's label, for batch-1 runs); raise
        TrainingDiverged when the run has diverged."""
        loss = float(loss)
        if not math.isfinite(loss):
            raise TrainingDiverged(step, "non-finite", f"the loss is {loss}")
        if self.base is None:
            self.base = max(self.ln_c, loss)
        if self._is_ln_c(loss):
            self.flat += 1
        else:
            self.flat, self.moved = 0, True
        if self.moved and self.flat >= WINDOW:
            raise TrainingDiverged(step, "collapsed", f"the loss has been ln({self.num_classes}) = {self.ln_c:.6f} "
                                   f"for {self.flat} steps: every logit is equal, the model's output no longer "
                                   "depends on its input")
        self.recent = [*self.recent, loss > FACTOR * self.base][-WINDOW:]
        if sum(self.recent) > WINDOW // 2:
            raise TrainingDiverged(step, "blown-up", f"{sum(self.recent)} of the last {WINDOW} losses exceed "
                                   f"{FACTOR:g}x the starting level {self.base:.3f} (chance level is "
                                   f"ln({self.num_classes}) = {self.ln_c:.3f})")
        if len(self.values) < MEAN_WINDOW:
            self.values.append(loss)
        else:
            self.values[self.count % MEAN_WINDOW] = loss
        self.count += 1
        total = np.float32(0)
        for v in self.values:  # float32, in ring order: the C twin sums the same way
            total = np.float32(total + np.float32(v))
        if self.count >= MEAN_WINDOW and total > np.float32(np.float32(MEAN_FACTOR * MEAN_WINDOW)
                                                           * np.float32(self.base)):
            raise TrainingDiverged(step, "blown-up", f"the mean of the last {MEAN_WINDOW} losses, "
                                   f"{total / MEAN_WINDOW:.3f}, "
                                   f"exceeds {MEAN_FACTOR:g}x the starting level {self.base:.3f} (chance level is "
                                   f"ln({self.num_classes}) = {self.ln_c:.3f})")
        if label is not None:
            self._stuck(step, loss, int(label))

    def _stuck(self, step: int, loss: float, label: int) -> None:
        bits = int(np.array([loss], np.float32).view(np.uint32)[0])
        if len(self.ring) < STUCK_WINDOW:
            self.ring.append([bits, label])
        else:
            self.ring[self.seen % STUCK_WINDOW] = [bits, label]
        self.seen += 1
        if self.seen < STUCK_WINDOW:
            return
        by_label: dict[int, int] = {}
        of_label = all(by_label.setdefault(lab, b) == b for b, lab in self.ring)
        if not of_label:
            self.varied = True
            return
        total = np.float32(0)
        for b, _ in self.ring:  # float32, in ring order: the C twin sums the same way
            total = np.float32(total + np.array([b], np.uint32).view(np.float32)[0])
        threshold = np.float32(np.float32(STUCK_WINDOW * STUCK_MEAN) * np.float32(self.ln_c))
        if self.varied and total >= threshold:
            raise TrainingDiverged(step, "stuck", f"over the last {STUCK_WINDOW} samples the loss depended on the "
                                   f"label alone (mean {total / STUCK_WINDOW:.3f}, chance level ln({self.num_classes}) "
                                   f"= {self.ln_c:.3f}): the model's output no longer depends on its input")

    def healthy(self) -> bool:
        """No sign of trouble in the window: a safe moment to checkpoint the weights."""
        return self.flat == 0 and not any(self.recent)

    def state_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_state(state: dict) -> LossWatch:
        return LossWatch(int(state["num_classes"]), None if state["base"] is None else float(state["base"]),
                         [bool(b) for b in state["recent"]], [float(v) for v in state.get("values", [])],
                         int(state.get("count", 0)), int(state["flat"]), bool(state["moved"]),
                         [[int(b), int(lab)] for b, lab in state.get("ring", [])], int(state.get("seen", 0)),
                         bool(state.get("varied", False)))


def watch_losses(losses: list[float], num_classes: int, labels: list[int] | None = None) -> None:
    """Apply the watch to a whole loss sequence (with the samples' labels: a batch-1 run); raise
    on divergence."""
    watch = LossWatch(num_classes)
    for step, loss in enumerate(losses):
        watch.update(step, loss, None if labels is None else labels[step])


def advice(lr: float) -> str:
    """What to do about a divergence at learning rate ``lr``."""
    return f"lower the learning rate (--lr {lr:g} now; try {lr / 3:.2g})"


def check_device_run(stdout: str, num_classes: int, labels) -> None:
    """Judge a finished host/QEMU run: the watch over the losses its driver printed (``step <i>
    loss <x> bits <b>``: the exact float32 from the bits, at the driver's own step numbers, which
    start after a restored checkpoint; sample ``i`` has label ``labels[i % len(labels)]``), which
    must agree with the driver's own watch (a ``diverged step <i>`` line means the driver stopped
    there). Raises TrainingDiverged, or
    RuntimeError if the C and Python twins disagree."""
    import re

    m = re.search(r"^diverged step (\d+) reason (\d+)$", stdout, re.M)
    watch = LossWatch(num_classes)
    try:
        for step, bits in re.findall(r"^step (\d+) loss \S+ bits ([0-9a-fA-F]{8})$", stdout, re.M):
            watch.update(int(step), float(np.array([int(bits, 16)], np.uint32).view(np.float32)[0]),
                         int(labels[int(step) % len(labels)]))
    except TrainingDiverged as e:
        if m is None or int(m.group(1)) != e.step:
            raise RuntimeError(f"internal error: the driver's divergence watch stopped at step "
                               f"{m.group(1) if m else 'none'}, its Python twin at step {e.step}") from None
        raise
    if m is not None:
        raise RuntimeError(f"internal error: the driver stopped at step {m.group(1)} (reason {m.group(2)}) but "
                           "the Python twin of its divergence watch sees no divergence")
