"""Figures: the seed's key plot, accuracy vs layer, confusion matrices, prefix transfer, count vs countdown.

Each function takes data and returns a matplotlib ``Figure``; the report stage saves
them (``io.files.save_figure``). ``accuracy_by_layer`` and ``series_records`` take the
per-layer headline table as ``Pipeline.summary()`` returns it, so a notebook draws the
same figure from the API. No backend is chosen here, so a notebook that imports this
module keeps its inline figures. Colours: ``style.index_colours`` for unit indices (shared by
the token read-outs), ``ROLE`` for the probe, its controls and baselines everywhere.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from emergent_pos.style import WIDTH_IN, index_colours

ROLE = {
    "probe": {"color": "tab:blue", "marker": "o", "ls": "-"},
    "balanced": {"color": "tab:purple", "marker": "s", "ls": "-"},
    "position_control": {"color": "tab:red", "marker": "^", "ls": ":"},
    "word_control": {"color": "tab:orange", "marker": "v", "ls": ":"},
    "position_only": {"color": "0.35", "ls": "--"},
    "confound_only": {"color": "0.55", "ls": (0, (6, 2, 1, 2))},
    "position_and_space": {"color": "tab:brown", "ls": "-."},
    "majority": {"color": "black", "ls": (0, (1, 3))},
}
"""Line style of each series: baselines are told apart by dash pattern, not by colour alone."""

BASELINE_LABELS = {
    "position_only": "baseline: absolute position",
    "confound_only": "baseline: nearer confound",
    "position_and_space": "baseline: position + begins a word",
    "majority": "baseline: majority class",
}


def key_plot(
    y: np.ndarray, pred: np.ndarray, position: np.ndarray, n_classes: int, title: str, unit: str = "word"
) -> Figure:
    """One row per true index; at each absolute position a bar stacked by predicted index.

    Bars are fractions of that (position, true index) group (each row's axis runs 0 to 1);
    the legend is in numerical order (the seed's was not). A bar's width does not show its
    count: thin groups at the binomial tails are as tall as thick ones.
    """
    colors = index_colours(n_classes)
    positions = np.arange(position.min(), position.max() + 1)
    fig, axes = plt.subplots(
        n_classes,
        1,
        figsize=(min(WIDTH_IN, max(8, 0.28 * len(positions))), 0.9 * n_classes + 1.4),
        sharex=True,
        squeeze=False,
    )
    for c, ax in enumerate(axes[:, 0]):
        m = y == c
        counts = np.zeros((len(positions), n_classes))
        np.add.at(counts, (position[m] - positions[0], np.clip(pred[m], 0, n_classes - 1)), 1)
        totals = counts.sum(axis=1, keepdims=True)
        frac = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        bottom = np.zeros(len(positions))
        for k in range(n_classes):
            ax.bar(positions, frac[:, k], bottom=bottom, color=colors[k], width=0.85, label=str(k))
            bottom += frac[:, k]
        ax.set_ylim(0, 1)
        ax.set_yticks([0, 1])
        ax.tick_params(axis="y", labelsize=7)
        ax.set_ylabel(f"true {c}", rotation=0, ha="right", va="center")
    axes[-1, 0].set_xlabel("absolute token position")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, title=f"predicted {unit}", loc="outside right center")
    fig.supylabel(f"fraction of the (position, true {unit}) group", fontsize=9)
    fig.suptitle(title)
    fig.set_layout_engine("constrained")
    return fig


SUMMARY_COLUMNS = ("layer", "accuracy", "accuracy_ci_low", "accuracy_ci_high")


def series_records(table: pd.DataFrame, baselines: dict[str, float]) -> list[dict]:
    """The accuracy-by-layer figure's data in long form for ``dvc plots``: one record per layer and
    series, with ``ci_low``/``ci_high`` where the series has an interval."""
    _require(table)
    out = []
    for r in table.itertuples(index=False):
        out.append(
            {
                "layer": int(r.layer),
                "series": "probe (95% CI)",
                "accuracy": r.accuracy,
                "ci_low": r.accuracy_ci_low,
                "ci_high": r.accuracy_ci_high,
            }
        )
        if "balanced_accuracy" in table:
            out.append(
                {
                    "layer": int(r.layer),
                    "series": "probe, balanced on position and confound (95% CI)",
                    "accuracy": r.balanced_accuracy,
                    "ci_low": r.balanced_ci_low,
                    "ci_high": r.balanced_ci_high,
                }
            )
        control = getattr(r, "position_control_accuracy", None)
        if control is not None and not pd.isna(control):
            out.append({"layer": int(r.layer), "series": "position-shuffled control", "accuracy": control})
        for name, value in baselines.items():
            out.append({"layer": int(r.layer), "series": BASELINE_LABELS.get(name, name), "accuracy": value})
    return out


def _require(table: pd.DataFrame) -> None:
    missing = [c for c in SUMMARY_COLUMNS if c not in table]
    if missing:
        raise ValueError(
            f"the table lacks {missing}: pass the per-layer headline table (Pipeline.summary() or "
            "metrics/probes.json's layers)"
        )


def accuracy_by_layer(table: pd.DataFrame, baselines: dict[str, float], title: str, unit: str = "word") -> Figure:
    """Validation accuracy per layer with 95% bootstrap intervals (shaded), against the
    position-shuffled control and the baselines (which see no activations: flat lines).

    ``table``: one row per layer with ``SUMMARY_COLUMNS`` (and, when present, the balanced
    accuracy and control); ``baselines``: name -> accuracy (``metrics/probes.json``'s
    ``baselines``).
    """
    _require(table)
    layers = table.layer.to_numpy()
    fig, ax = plt.subplots(figsize=(9, 4.2), layout="constrained")
    for key, col, low, high, label in (
        ("probe", "accuracy", "accuracy_ci_low", "accuracy_ci_high", f"{unit}-index probe (95% CI)"),
        ("balanced", "balanced_accuracy", "balanced_ci_low", "balanced_ci_high", "probe, balanced (95% CI)"),
    ):
        if col not in table:
            continue
        style = ROLE[key]
        ax.plot(layers, table[col], label=label, **style)
        ax.fill_between(layers, table[low], table[high], color=style["color"], alpha=0.2, lw=0)
    if "position_control_accuracy" in table and table.position_control_accuracy.notna().all():
        ax.plot(layers, table.position_control_accuracy, label="position-shuffled control", **ROLE["position_control"])
    for name, value in baselines.items():
        style = ROLE.get(name, {"color": "0.5", "ls": "--"})
        ax.axhline(value, label=f"{BASELINE_LABELS.get(name, name)} ({value:.2f})", lw=1.2, **style)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("validation accuracy")
    ax.set_xticks(layers)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig


def confusion(matrix: np.ndarray, title: str, unit: str = "word") -> Figure:
    fig, ax = plt.subplots(figsize=(6, 4.8), layout="constrained")
    annotate = len(matrix) <= 12
    sns.heatmap(
        matrix,
        annot=annotate,
        fmt=".2f",
        cmap="viridis",
        vmin=0,
        vmax=1,
        ax=ax,
        cbar_kws={"label": "fraction of the true row"},
    )
    ax.set_xlabel(f"predicted {unit}")
    ax.set_ylabel(f"true {unit}")
    ax.set_title(title, fontsize=10)
    return fig


def prefix_transfer(transfer: dict[str, dict], title: str) -> Figure:
    """Accuracy per layer on each prefix (prefix_id 0 = the training prefix) with its 95%
    interval, and the position-only baseline of each prefix dashed in the same colour.

    ``transfer`` is ``metrics.prefix_transfer``'s: per prefix, ``accuracy`` and ``ci`` by
    layer, ``position_only`` and (when known) its ``role``.
    """
    fig, ax = plt.subplots(figsize=(10, 4.4), layout="constrained")
    layer_ids: list[int] = []
    for i, (k, row) in enumerate(transfer.items()):
        color = f"C{i}"
        layer_ids = sorted(int(layer) for layer in row["accuracy"])
        acc = [row["accuracy"][str(layer)] for layer in layer_ids]
        lo, hi = zip(*(row["ci"][str(layer)] for layer in layer_ids), strict=True)
        role = row.get("role") or ("training prefix" if k == "0" else "held-out")
        ax.plot(layer_ids, acc, marker="o", color=color, label=f"prefix {k} ({role}), 95% CI")
        ax.fill_between(layer_ids, lo, hi, color=color, alpha=0.15, lw=0)
        ax.axhline(row["position_only"], ls="--", color=color, alpha=0.6)
    ax.plot([], [], ls="--", color="0.4", label="position-only baseline (per prefix, same colour)")
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("validation accuracy")
    ax.set_xticks(layer_ids)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    fig.legend(fontsize=8, loc="outside right upper")
    ax.set_title(title, fontsize=10)
    return fig


def count_vs_countdown(result: dict[str, dict], n_trained: int, title: str, unit: str = "word") -> Figure:
    """One panel per evaluation count: P(predicted index | true index), with the cells the
    count hypothesis expects (circles) and the countdown expects (crosses), where both
    name a trained label."""
    panels = {m: row for m, row in result.items() if "predicted_given_true" in row}
    fig, axes = plt.subplots(
        1, max(1, len(panels)), figsize=(min(WIDTH_IN, 5 * len(panels) + 1), 4.6), squeeze=False, layout="constrained"
    )
    image = None
    for ax, (m, row) in zip(axes[0], panels.items(), strict=False):
        dist = np.array(row["predicted_given_true"])
        image = ax.imshow(dist, cmap="viridis", vmin=0, vmax=1, aspect="auto")
        i = np.arange(int(m))
        down = i + n_trained - int(m)
        keep = (i < n_trained) & (down >= 0) & (down < n_trained)
        ax.plot(i[i < n_trained], i[i < n_trained], "o", mfc="none", mec="tab:cyan", mew=2, ms=12, label="count")
        ax.plot(down[keep], i[keep], "x", color="tab:red", ms=10, label="countdown")
        c, d = row["count"], row["countdown"]
        baseline = f" (position only {c['position_only']:.2f})" if "position_only" in c else ""
        ax.set_title(
            f"{m} {unit}s: count {c['agreement']:.2f} [{c['ci_low']:.2f}, {c['ci_high']:.2f}]{baseline},\n"
            f"countdown {d['agreement']:.2f}; verdict: {row['verdict']}",
            fontsize=9,
        )
        ax.set_xlabel(f"predicted {unit}")
        ax.set_ylabel(f"true {unit}")
        ax.set_xticks(range(n_trained))
        ax.set_yticks(i)
    if image is not None:
        fig.colorbar(image, ax=axes[0].tolist(), label="P(predicted | true)", shrink=0.8)
        fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside right upper", fontsize=8)
    fig.suptitle(title)
    return fig


def regression_by_layer(per_layer: dict, baselines: dict[str, dict], title: str) -> Figure:
    """An ordinal scheme's ridge probe: out-of-sample R² per layer (95% CI shaded) against the
    mean-count baselines."""
    rows = {int(k): v for k, v in per_layer.items()}
    layers = sorted(rows)
    r2 = np.array([rows[k]["r2"] for k in layers])
    lo = np.array([rows[k]["r2_ci_low"] for k in layers])
    hi = np.array([rows[k]["r2_ci_high"] for k in layers])
    fig, ax = plt.subplots(figsize=(9, 4.2), layout="constrained")
    ax.plot(layers, r2, label="ridge probe, out-of-sample R² (95% CI)", **ROLE["probe"])
    ax.fill_between(layers, lo, hi, color=ROLE["probe"]["color"], alpha=0.2, lw=0)
    names = {"position_mean": "position_only", "confound_mean": "confound_only"}
    for name, scores in baselines.items():
        ax.axhline(scores["r2"], label=f"{BASELINE_LABELS[names[name]]} ({scores['r2']:.2f})", **ROLE[names[name]])
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("validation R²")
    ax.set_xticks(layers)
    ax.set_ylim(min(0.0, float(np.nanmin(lo)) - 0.05), 1)
    ax.grid(alpha=0.3)
    fig.legend(fontsize=8, loc="outside right upper")
    ax.set_title(title)
    return fig
