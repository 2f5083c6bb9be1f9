"""The organism's training curve (a figure returned, saved by the stage)."""

from __future__ import annotations

from typing import Any


def training_curve(curve: list[dict], title: str) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    if curve:
        ax.plot([r["step"] for r in curve], [r["loss"] for r in curve])
    else:
        note = "no training here (a given model, or the organism at step0)"
        ax.text(0.5, 0.5, note, ha="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig
