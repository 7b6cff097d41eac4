"""Draw a memory plan as a timeline PNG: one rectangle per buffer (x: steps alive, y: arena
offset), coloured by kind, with the live-bytes curve on top."""

from __future__ import annotations

from pathlib import Path

from microtrain.compiler.plan_memory import MemoryPlan

COLOURS = {"input": "#8c564b", "activations": "#1f77b4", "saved": "#ff7f0e", "masks": "#9467bd",
           "gradients": "#d62728", "weight_gradients": "#2ca02c", "loss": "#7f7f7f"}


def plot_memory(plan: MemoryPlan, path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    fig, (top, ax) = plt.subplots(2, 1, figsize=(11, 7), sharex=True, gridspec_kw={"height_ratios": [1, 3]})
    for b in plan.buffers:
        ax.add_patch(Rectangle((b.first, b.offset / 1024), b.last - b.first + 1, b.size / 1024,
                               facecolor=COLOURS.get(b.kind, "#17becf"), edgecolor="black", linewidth=0.2))
    n = len(plan.steps)
    ax.set_xlim(-1, n + 1)
    ax.set_ylim(0, max(plan.arena_bytes, 1) / 1024 * 1.05)
    ax.set_xlabel("schedule step")
    ax.set_ylabel("arena offset (KB)")
    ax.legend(handles=[Patch(color=c, label=k) for k, c in COLOURS.items()], loc="upper right", fontsize=8)
    live = plan.live_bytes()
    top.plot(range(-1, n), [v / 1024 for v in live], color="black")
    top.set_ylabel("live KB")
    top.set_title(title or f"arena {plan.arena_bytes / 1024:.1f} KB + trained {plan.trainable_bytes / 1024:.1f} KB")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
