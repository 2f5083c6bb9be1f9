"""Figures: the seed's key plot, accuracy vs layer, confusion matrices, prefix transfer.

Each function takes data and returns a matplotlib ``Figure``; the report stage saves
them (``io.files.save_figure``). No backend is chosen here, so a notebook that imports
this module keeps its inline figures.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.figure import Figure


def key_plot(y: np.ndarray, pred: np.ndarray, position: np.ndarray, n_classes: int, title: str) -> Figure:
    """One row per true word index; at each absolute position a bar stacked by predicted index.

    Bars are fractions of that (position, true index) group; the legend is in numerical
    order (the seed's was not). A bar's width does not show its count: thin groups at the
    binomial tails are as tall as thick ones.
    """
    colors = sns.color_palette("tab10", n_classes)
    positions = np.arange(position.min(), position.max() + 1)
    fig, axes = plt.subplots(
        n_classes, 1, figsize=(max(8, 0.32 * len(positions)), 1.3 * n_classes + 1), sharex=True, squeeze=False
    )
    for c, ax in enumerate(axes[:, 0]):
        m = y == c
        counts = np.zeros((len(positions), n_classes))
        np.add.at(counts, (position[m] - positions[0], pred[m]), 1)
        totals = counts.sum(axis=1, keepdims=True)
        frac = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        bottom = np.zeros(len(positions))
        for k in range(n_classes):
            ax.bar(positions, frac[:, k], bottom=bottom, color=colors[k], width=0.85, label=str(k))
            bottom += frac[:, k]
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"word {c}", rotation=0, ha="right", va="center")
        ax.set_yticks([])
    axes[-1, 0].set_xlabel("absolute token position")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, title="predicted", loc="center right", bbox_to_anchor=(1.06, 0.5))
    fig.suptitle(title)
    return fig


# The series of the accuracy-by-layer figure: key in the per-layer rows -> legend label.
SERIES = {
    "probe": "word-index probe (95% CI)",
    "probe_balanced": "probe, position-balanced subset",
    "position_control": "position-shuffled control",
    "position_and_space": "baseline: position + begins with space",
    "position_only": "baseline: position only",
    "majority": "baseline: majority class",
}
_STYLE = {
    "probe": {"marker": "o"},
    "probe_balanced": {"marker": "s"},
    "position_control": {"marker": "^", "color": "tab:red"},
    "position_and_space": {"ls": "-.", "color": "tab:brown"},
    "position_only": {"ls": "--", "color": "grey"},
    "majority": {"ls": ":", "color": "black"},
}


def series_records(rows: list[dict]) -> list[dict]:
    """The figure's data in long form (one record per layer and series) for ``dvc plots``."""
    return [
        {"layer": r["layer"], "series": label, "accuracy": r[key]}
        for r in rows
        for key, label in SERIES.items()
        if r.get(key) is not None
    ]


def accuracy_by_layer(rows: list[dict], title: str) -> Figure:
    """Validation accuracy per layer with 95% bootstrap intervals, against the baselines."""
    layers = [r["layer"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for key, label in SERIES.items():
        if rows[0].get(key) is None:  # no control fitted
            continue
        values = np.array([r[key] for r in rows])
        if key == "probe":
            err = np.array([values - [r["probe_ci_low"] for r in rows], [r["probe_ci_high"] for r in rows] - values])
            ax.errorbar(layers, values, yerr=err, capsize=3, label=label, **_STYLE[key])
        else:
            ax.plot(layers, values, label=label, **_STYLE[key])
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("validation accuracy")
    ax.set_xticks(layers)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.set_title(title)
    return fig


def confusion(matrix: np.ndarray, title: str) -> Figure:
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    sns.heatmap(matrix, annot=True, fmt=".2f", cmap="viridis", vmin=0, vmax=1, ax=ax, cbar=False)
    ax.set_xlabel("predicted word index")
    ax.set_ylabel("true word index")
    ax.set_title(title)
    return fig


def prefix_transfer(transfer: dict[str, dict[str, float]], title: str) -> Figure:
    """Accuracy per layer on each prefix (prefix_id 0 = the training prefix), with the
    position-only baseline of each prefix dashed in the same colour.

    ``transfer`` is ``metrics.prefix_transfer``'s: per prefix, ``layer_NN`` accuracies
    and ``position_only``.
    """
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (k, row) in enumerate(transfer.items()):
        color = f"C{i}"
        keys = sorted(key for key in row if key.startswith("layer_"))
        layers = [int(key.removeprefix("layer_")) for key in keys]
        ax.plot(
            layers,
            [row[key] for key in keys],
            marker="o",
            color=color,
            label=f"prefix {k}" + (" (training prefix)" if k == "0" else ""),
        )
        ax.axhline(row["position_only"], ls="--", color=color, alpha=0.6)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("validation accuracy")
    ax.set_xticks(layers)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title + " (dashed: position-only baseline)", fontsize=9)
    return fig


def count_vs_countdown(result: dict[str, dict], n_trained: int, title: str) -> Figure:
    """One panel per evaluation length: P(predicted index | true index), with the cells the
    count hypothesis expects (circles) and the countdown expects (crosses)."""
    fig, axes = plt.subplots(1, len(result), figsize=(4.6 * len(result), 4.4), squeeze=False, layout="constrained")
    for ax, (m, row) in zip(axes[0], result.items(), strict=True):
        dist = np.array(row["predicted_given_true"])
        ax.imshow(dist, cmap="viridis", vmin=0, vmax=1, aspect="auto")
        i = np.arange(int(m))
        ax.plot(np.minimum(i, n_trained - 1), i, "o", mfc="none", mec="tab:cyan", mew=2, ms=12, label="count")
        ax.plot(np.clip(i + n_trained - int(m), 0, n_trained - 1), i, "x", color="tab:red", ms=10, label="countdown")
        c, d = row["count"], row["countdown"]
        baseline = f" (position only {c['position_only']:.2f})" if "position_only" in c else ""
        ax.set_title(
            f"{m} words: count {c['agreement']:.2f} [{c['ci_low']:.2f}, {c['ci_high']:.2f}]{baseline},\n"
            f"countdown {d['agreement']:.2f}; verdict: {row['verdict']}",
            fontsize=9,
        )
        ax.set_xlabel("predicted word index")
        ax.set_ylabel("true word index")
        ax.set_xticks(range(n_trained))
        ax.set_yticks(i)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside right upper", fontsize=8)
    fig.suptitle(title)
    return fig
