"""Plots of planning and benchmark results (matplotlib, Agg backend: files only, no display)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (memory, proxy) points no other point beats with less or equal memory, by memory."""
    front: list[tuple[float, float]] = []
    for m, p in sorted(points, key=lambda t: (t[0], -t[1])):
        if not front or p > front[-1][1]:
            front.append((m, p))
    return front


def plot_frontier(evaluated: Sequence[tuple[int, float]], chosen: tuple[int, float], budget: int, path: str | Path,
                  title: str = "", baseline: Sequence[tuple[int, float]] = ()) -> Path:
    """Accuracy proxy vs compiled peak memory of every evaluated scheme (KB = 1024 bytes).

    ``evaluated``/``baseline`` are (peak bytes, proxy) of the searched and of the random
    baseline's schemes; the chosen scheme is starred and the budget is a vertical line.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if baseline:
        ax.scatter([m / 1024 for m, _ in baseline], [100 * p for _, p in baseline], s=10, c="tab:gray",
                   alpha=0.5, label="random search")
    ax.scatter([m / 1024 for m, _ in evaluated], [100 * p for _, p in evaluated], s=12, c="tab:blue", alpha=0.6,
               label="evolutionary search")
    front = pareto_front([(m, p) for m, p in list(evaluated) + list(baseline)])
    ax.step([m / 1024 for m, _ in front], [100 * p for _, p in front], where="post", c="tab:blue", lw=1,
            label="frontier")
    ax.axvline(budget / 1024, c="tab:red", ls="--", lw=1, label=f"budget {budget / 1024:.0f} KB")
    ax.scatter([chosen[0] / 1024], [100 * chosen[1]], marker="*", s=220, c="tab:orange", edgecolors="k",
               zorder=5, label=f"chosen ({chosen[0] / 1024:.1f} KB)")
    ax.set_xlabel("peak memory of the compiled training step (KB)")
    ax.set_ylabel("accuracy proxy (%): classifier + summed gains")
    ax.set_title(title or "update schemes: accuracy proxy vs memory")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_accuracy_vs_memory(series: dict[str, Sequence[tuple[int, float]]], path: str | Path, title: str = "",
                            budgets: Sequence[int] = ()) -> Path:
    """Measured accuracy vs peak memory, one line per method (the validation benchmark)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = "o^sDvx*P"
    for i, (name, pts) in enumerate(series.items()):
        pts = sorted(pts)
        ax.plot([m / 1024 for m, _ in pts], [100 * a for _, a in pts], marker=markers[i % len(markers)], lw=1,
                label=name)
    for b in budgets:
        ax.axvline(b / 1024, c="tab:gray", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("peak memory of the compiled training step (KB, log scale)")
    ax.set_ylabel("test accuracy after fine-tuning (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
