"""The paper's comparison for ``make demo``: "cloud training + edge deployment" next to training on
the device, on the same data and passes, and the plot of the device's run.

Cloud training, as the paper defines it: fp32 fine-tuning of the whole model (every layer's
weights and biases; activations in float, ``sim/float_model.py``), starting from the same model
and new head the device starts from, at batch 1 over the same training samples in the same order,
with the same learning-rate schedule, then its weights quantized back to int8 on the model's
scales for the device. Its held-out accuracy is measured with the integer-only evaluator on the
test digits the device is evaluated on. Deterministic: one torch thread, seeded everything.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def cloud_training(project: Path, data: str, steps: int, lr: float, eval_count: int, seed: int = 0) -> dict:
    """Accuracy of the fp32-fine-tuned, int8-deployed model, the per-step losses and the prequential
    predictions (each training sample predicted before the step that learns from it)."""
    import torch

    from microtrain.api.evaluate import predict_int8
    from microtrain.api.run import run_schedule, samples
    from microtrain.ir import load_graph
    from microtrain.runtime.schedule import learning_rate
    from microtrain.sparse.presets import preset
    from microtrain.train.loop import TrainConfig, Trainer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        graph = load_graph(Path(project) / "model")  # the model and new head the device starts from
        x, y = samples(data, "train", steps, graph, seed)  # the samples and order `run` streams
        x_test, y_test = samples(data, "test", eval_count, graph, seed + 1)
        report = json.loads((Path(project) / "report.json").read_text())
        sched = run_schedule(report, steps, lr, "cosine", None)
        trainer = Trainer(graph, preset("full", graph),
                          TrainConfig(optimizer="fp32-sgd", lr=lr, batch_size=1, seed=seed, schedule="cosine"))
        cache = trainer.cache(x)
        losses, predicted = [], []
        for s in range(steps):
            idx = np.array([s % len(x)])
            with torch.no_grad():
                predicted.append(int(trainer.logits(trainer._take(cache, idx)).argmax(1)[0]))
            rate = learning_rate(sched["kind"], sched["lr"], s, sched["warmup_updates"], sched["total_updates"])
            losses.append(trainer._step(cache, y, [idx], rate))
        final = trainer.final_graph()
        accuracy = float(np.mean(predict_int8(final, x_test, engine="batched", progress=False) == y_test))
    finally:
        torch.set_num_threads(threads)
    labels = [int(y[s % len(x)]) for s in range(steps)]
    correct = np.array(predicted) == np.array(labels)
    return {"accuracy": accuracy, "eval_total": len(y_test), "losses": losses, "correct": correct.astype(int).tolist(),
            "prequential": (np.cumsum(correct) / np.arange(1, steps + 1)).tolist()}


def _moving(values: list[float], window: int) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if len(v) < window:
        return v
    return np.convolve(v, np.ones(window) / window, mode="valid")


def plot_training(path: Path, device: dict, cloud: dict, title: str) -> Path:
    """Loss and prequential accuracy (moving averages) over the steps, device next to cloud; each
    doc has ``losses`` and ``correct`` (1 where the sample was predicted right before it was learnt)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = max(1, min(100, len(device["losses"]) // 10))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
    for doc, label, style in ((device, "device (int8, emulated Cortex-M7)", "-"), (cloud, "cloud (fp32, whole model)",
                                                                                      "--")):
        ma = _moving(doc["losses"], window)
        ax1.plot(np.arange(len(ma)) + window, ma, style, label=label)
        acc = _moving(doc["correct"], window)
        ax2.plot(np.arange(len(acc)) + window, 100 * acc, style, label=label)
    ax1.set_ylabel(f"training loss\n(mean of {window} steps)")
    ax1.legend()
    ax1.set_title(title)
    ax2.set_ylabel(f"prequential accuracy %, last {window}\n(each sample predicted before it is learnt)")
    ax2.set_xlabel("training step (batch 1)")
    ax2.set_ylim(0, 100)
    ax2.grid(alpha=0.3)
    ax1.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path
