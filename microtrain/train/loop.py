"""Training loop: optimizer choice, cosine schedule with warm-up, batches, gradient
accumulation, evaluation and resumable checkpoints.

The recipe is the device's, to the bit at batch 1: the loss and its logit gradient are
``train/device_loss.py``'s, the learning rate of update t is ``runtime/schedule.py``'s (float32),
the gradients of the ``accumulate`` micro-batches of an update are summed in order and
multiplied by float32(1/K), momentum is ``rounding.optimizer_direction``'s.

Optimizer names (``OPTIMIZERS``): ``sgd``, ``sgdm``, ``adam`` update the int8 tensors
without QAS; the ``-qas`` variants with it; ``float-shadow`` (SGD+QAS) and
``float-shadow-sgdm`` keep the paper's float shadow weights; ``fp32-sgd``, ``fp32-sgdm``,
``fp32-adam`` train the float model of ``sim/float_model.py`` (the fp32 baseline).

Every optimizer step's loss goes through the divergence watch (``train/divergence.py``): a
diverged run raises ``TrainingDiverged`` naming the step, and checkpoints are only taken while
the watch sees no sign of trouble, so the last checkpoint holds weights from before it.

Everything random is counter-based or seeded per epoch (shuffling uses
``default_rng([seed, epoch])``), so a run resumed from a checkpoint taken after any step
continues exactly as the uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import torch

from microtrain.ir.graph import Graph
from microtrain.runtime.rounding import accumulate_scale
from microtrain.runtime.schedule import learning_rate
from microtrain.scheme import UpdateScheme
from microtrain.sim.float_model import FloatModel
from microtrain.sim.simulator import Simulator
from microtrain.train.device_loss import device_cross_entropy, device_mean_squared_error
from microtrain.train.divergence import LossWatch
from microtrain.train.optim import Int8Optimizer

OPTIMIZERS: dict[str, tuple[str, bool, str]] = {
    # name: (kind, qas, mode) with mode "int8" | "shadow" | "fp32"
    "sgd": ("sgd", False, "int8"), "sgd-qas": ("sgd", True, "int8"),
    "sgdm": ("sgdm", False, "int8"), "sgdm-qas": ("sgdm", True, "int8"),
    "adam": ("adam", False, "int8"), "adam-qas": ("adam", True, "int8"),
    "float-shadow": ("sgd", True, "shadow"), "float-shadow-sgdm": ("sgdm", True, "shadow"),
    "fp32-sgd": ("sgd", False, "fp32"), "fp32-sgdm": ("sgdm", False, "fp32"), "fp32-adam": ("adam", False, "fp32"),
}


@dataclasses.dataclass
class TrainConfig:
    optimizer: str = "sgd-qas"
    lr: float = 0.05
    epochs: int = 5
    batch_size: int = 8
    accumulate: int = 1  # micro-batches per optimizer step
    rounding: str = "stochastic"
    seed: int = 0
    warmup_fraction: float = 0.1  # of all optimizer steps, linear warm-up then cosine to 0
    momentum: float = 0.9
    schedule: str = "cosine"  # cosine | constant: the device's schedule (runtime/schedule.py), in float32
    loss: str = "cross_entropy"  # cross_entropy | mse: an autoencoder's reconstruction error; its "labels"
    #                              are then the int8 inputs [N, features] it reconstructs
    grad_dtype: str = "fp32"  # fp32 | int16 | int8: the layers' error tensors in the backward (runtime/grad_quant.py)


def _torch_optimizer(kind: str, params: list[torch.Tensor], cfg: TrainConfig) -> torch.optim.Optimizer:
    if kind == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum if kind == "sgdm" else 0.0)


class Trainer:
    def __init__(self, graph: Graph, scheme: UpdateScheme, cfg: TrainConfig) -> None:
        if cfg.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        self.cfg = cfg
        kind, qas, self.mode = OPTIMIZERS[cfg.optimizer]
        if cfg.loss not in ("cross_entropy", "mse"):
            raise ValueError(f"unknown loss {cfg.loss!r}; choose cross_entropy or mse")
        self.sim = Simulator(graph, scheme, cfg.grad_dtype)
        self.target_quant = graph.tensors[graph.inputs[0]].quant  # the reconstruction target's (mse)
        self.float_model: FloatModel | None = None
        self.int8_opt: Int8Optimizer | None = None
        self.torch_opts: list[torch.optim.Optimizer] = []
        if self.mode == "fp32":
            self.float_model = FloatModel(self.sim)
            if self.float_model.parameters():
                self.torch_opts.append(_torch_optimizer(kind, self.float_model.parameters(), cfg))
        else:
            self.int8_opt = Int8Optimizer(self.sim, kind, qas, cfg.rounding, cfg.seed, cfg.momentum,
                                          shadow=self.mode == "shadow")
        if self.sim.head_w is not None:  # fp32 head: trained in float with the same kind of optimizer
            self.sim.head_w.requires_grad_()
            self.sim.head_b.requires_grad_()
            self.torch_opts.append(_torch_optimizer(kind, [self.sim.head_w, self.sim.head_b], cfg))
        self.epoch = 0
        self.batch_in_epoch = 0
        self.watch = LossWatch(int(graph.tensors[graph.outputs[0]].shape[-1]))  # raises TrainingDiverged
        self.history: list[dict] = []
        self.epoch_losses: list[float] = []  # losses of the current epoch so far (checkpointed)

    # --- data -----------------------------------------------------------------------------
    def cache(self, x_q: np.ndarray, chunk: int = 256,
              progress: Callable[[int], None] | None = None) -> dict[str, torch.Tensor]:
        """The frozen prefix's live tensors for every sample (computed once: it never changes).
        ``progress(n)`` is called with the number of samples of each finished chunk."""
        parts = []
        for i in range(0, len(x_q), chunk):
            parts.append(self.sim.prefix(x_q[i:i + chunk]))
            if progress is not None:
                progress(len(x_q[i:i + chunk]))
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    @staticmethod
    def _take(cache: dict[str, torch.Tensor], idx: np.ndarray) -> dict[str, torch.Tensor]:
        t = torch.from_numpy(idx)
        return {k: v[t] for k, v in cache.items()}

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.float_model is not None:
            if self.sim.head_w is not None:
                raise ValueError("the fp32 baseline trains the float model; use the int8 classifier head")
            return self.float_model.forward(batch)
        return self.sim.forward(cached=batch)[0]

    def evaluate(self, cache: dict[str, torch.Tensor], labels: np.ndarray, chunk: int = 512) -> float:
        correct = 0
        with torch.no_grad():
            saved = [(p.w_real, p.b_real) for p in self.sim.params.values()]
            self.sim.attach_grads([])
            for i in range(0, len(labels), chunk):
                idx = np.arange(i, min(i + chunk, len(labels)))
                pred = self.logits(self._take(cache, idx)).argmax(1).numpy()
                correct += int((pred == labels[idx]).sum())
            for p, (w, b) in zip(self.sim.params.values(), saved, strict=True):
                p.w_real, p.b_real = w, b
        return correct / max(1, len(labels))

    # --- training -------------------------------------------------------------------------
    def steps_per_epoch(self, n: int) -> int:
        return math.ceil(n / (self.cfg.batch_size * self.cfg.accumulate))

    def _step(self, cache: dict[str, torch.Tensor], labels: np.ndarray, group: list[np.ndarray], lr: float) -> float:
        if self.int8_opt is not None:
            self.int8_opt.attach()
        for opt in self.torch_opts:
            opt.zero_grad(set_to_none=True)
            for pg in opt.param_groups:
                pg["lr"] = lr
        total = 0.0
        self.sample_losses = []
        for idx in group:
            logits = self.logits(self._take(cache, idx))
            if self.cfg.loss == "mse":
                target = torch.from_numpy(np.asarray(labels[idx]).reshape(len(idx), -1))
                per_sample = device_mean_squared_error(logits, target, self.target_quant.s, self.target_quant.z)
            else:
                per_sample = device_cross_entropy(logits, torch.from_numpy(labels[idx]).to(torch.int64))
            per_sample.mean().backward()  # batch 1: exactly the device's logit gradient
            self.sample_losses.extend(per_sample.detach().tolist())
            total += float(per_sample.detach().mean()) / len(group)
        # The gradients of the group's micro-batches were summed (autograd accumulates in order,
        # as the device's accumulation buffer does); the update uses their mean, sum * float32(1/K).
        scale = accumulate_scale(len(group))
        if self.float_model is not None:
            self.float_model.mask_grads()
        for opt in self.torch_opts:
            if len(group) > 1:
                for pg in opt.param_groups:
                    for p in pg["params"]:
                        if p.grad is not None:
                            p.grad.mul_(float(scale))
            opt.step()
        if self.int8_opt is not None:
            self.int8_opt.step(lr, scale)
        return total

    def fit(self, train: dict[str, torch.Tensor], y_train: np.ndarray, test: dict[str, torch.Tensor] | None = None,
            y_test: np.ndarray | None = None, on_step: Callable[[Trainer, float], None] | None = None,
            on_epoch: Callable[[Trainer, dict], None] | None = None,
            checkpoint: Callable[[Trainer], None] | None = None, checkpoint_every: int = 0) -> list[dict]:
        cfg = self.cfg
        n = len(y_train)
        per_epoch = self.steps_per_epoch(n)
        total = per_epoch * cfg.epochs
        warmup = int(cfg.warmup_fraction * total)
        while self.epoch < cfg.epochs:
            perm = np.random.default_rng([cfg.seed, self.epoch]).permutation(n)
            micro = [perm[i:i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]
            groups = [micro[i:i + cfg.accumulate] for i in range(0, len(micro), cfg.accumulate)]
            if self.batch_in_epoch == 0:
                self.epoch_losses = []
            for s in range(self.batch_in_epoch, per_epoch):
                lr = learning_rate(cfg.schedule, cfg.lr, self.epoch * per_epoch + s, warmup, total)
                loss = self._step(train, y_train, groups[s], lr)
                self.watch.update(self.epoch * per_epoch + s, loss)  # a diverged run stops here (no checkpoint)
                self.epoch_losses.append(loss)
                self.batch_in_epoch = s + 1
                if on_step is not None:
                    on_step(self, loss)
                if checkpoint is not None and checkpoint_every and self.batch_in_epoch % checkpoint_every == 0 \
                        and self.batch_in_epoch < per_epoch and self.watch.healthy():
                    checkpoint(self)
            self.epoch += 1
            self.batch_in_epoch = 0
            losses = self.epoch_losses
            row = {"epoch": self.epoch, "train_loss": float(np.mean(losses)) if losses else float("nan")}
            if test is not None and y_test is not None:
                row["test_accuracy"] = self.evaluate(test, y_test)
            self.history.append(row)
            if on_epoch is not None:
                on_epoch(self, row)
            if checkpoint is not None and self.watch.healthy():  # only weights from before any sign of trouble
                checkpoint(self)
        return self.history

    def final_graph(self) -> Graph:
        """The trained int8 graph (the fp32 baseline's float weights re-quantized on their scales)."""
        if self.float_model is not None:
            self.float_model.write_back()
        return self.sim.to_graph()

    # --- checkpointing --------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything a resumed run needs: trained codes, optimizer state, position, history."""
        state: dict = {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "history": list(self.history),
                       "epoch_losses": list(self.epoch_losses), "watch": self.watch.state_dict(),
                       "codes": {name: {"w": p.w_q.clone(), "b": p.b_q.clone()} for name, p in self.sim.params.items()
                                 if name in self.sim.scheme.updated_layers()},
                       "torch_opts": [opt.state_dict() for opt in self.torch_opts]}
        if self.int8_opt is not None:
            state["int8_opt"] = self.int8_opt.state_dict()
        if self.float_model is not None:
            state["float_weights"] = {k: [t.detach().clone() for t in v] for k, v in self.float_model.weights.items()}
        if self.sim.head_w is not None:
            state["head"] = [self.sim.head_w.detach().clone(), self.sim.head_b.detach().clone()]
        return state

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.batch_in_epoch = int(state["epoch"]), int(state["batch_in_epoch"])
        self.history, self.epoch_losses = list(state["history"]), list(state["epoch_losses"])
        if "watch" in state:
            self.watch = LossWatch.from_state(state["watch"])
        for name, codes in state["codes"].items():
            self.sim.params[name].w_q.copy_(codes["w"])
            self.sim.params[name].b_q.copy_(codes["b"])
        if self.int8_opt is not None:
            self.int8_opt.load_state_dict(state["int8_opt"])
        with torch.no_grad():
            if self.float_model is not None:
                for k, v in state["float_weights"].items():
                    for t, saved in zip(self.float_model.weights[k], v, strict=True):
                        t.copy_(saved)
            if self.sim.head_w is not None:
                self.sim.head_w.copy_(state["head"][0])
                self.sim.head_b.copy_(state["head"][1])
        for opt, st in zip(self.torch_opts, state["torch_opts"], strict=True):
            opt.load_state_dict(st)
