"""Figures of the mechanism stages; each takes data and returns a matplotlib ``Figure``.

No backend is chosen here, so a notebook that imports this module keeps inline figures.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.figure import Figure

from emergent_pos.analysis.heads import SCORES
from emergent_pos.style import WIDTH_IN, index_colours, visible


def head_scores(observed: np.ndarray, null: np.ndarray, title: str) -> Figure:
    """One layer x head heatmap per score: observed minus null, each cell "observed (null)"."""
    n_layers, n_heads, _ = observed.shape
    cols = 3
    rows = int(np.ceil(len(SCORES) / cols))
    width = min(WIDTH_IN, cols * (1.2 + 0.55 * n_heads) + 1.0)
    fig, axes = plt.subplots(
        rows, cols, figsize=(width, rows * (1.0 + 0.45 * n_layers) + 0.8), squeeze=False, layout="constrained"
    )
    mesh = None
    for s, (name, ax) in enumerate(zip(SCORES, axes.ravel(), strict=False)):
        excess = observed[..., s] - null[..., s]
        labels = np.vectorize(lambda o, n: "" if not np.isfinite(o) else f"{o:.2f}\n({n:.2f})")(
            observed[..., s], null[..., s]
        )
        annotate = n_heads <= 8
        sns.heatmap(
            excess,
            ax=ax,
            cmap="RdBu_r",
            center=0,
            vmin=-1,
            vmax=1,
            annot=labels if annotate else False,
            fmt="",
            cbar=False,
            annot_kws={"fontsize": 7},
        )
        mesh = ax.collections[0]
        ax.set_title(name.replace("_", " "), fontsize=10)
        ax.set_xlabel("head")
        ax.set_ylabel("block")
    if mesh is not None:
        fig.colorbar(mesh, ax=axes, label="observed - null (share of attention)", shrink=0.8)
    fig.suptitle(title + "\ncolour: observed - relative-position null; cells: observed (null)")
    return fig


def head_patterns(patterns: list[tuple[str, np.ndarray, list[str]]], title: str) -> Figure:
    """Attention patterns (query rows, key columns), each with its head name and token labels.

    Two panels a row at most, so that a pattern of a few dozen tokens keeps readable tick
    labels within ``WIDTH_IN``.
    """
    n = len(patterns)
    cols = min(n, 2)
    rows = int(np.ceil(n / cols))
    size = min((WIDTH_IN - 1.0) / cols, max(len(p[2]) for p in patterns) * 0.18 + 1.5)
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * size + 1.0, rows * size + 0.6), squeeze=False, layout="constrained"
    )
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for (name, pattern, labels), ax in zip(patterns, axes.ravel(), strict=False):
        sns.heatmap(pattern, ax=ax, cmap="Blues", vmin=0, vmax=1, cbar=False, square=True)
        shown = [visible(t) for t in labels]
        ax.set_xticks(np.arange(len(shown)) + 0.5, shown, rotation=90, fontsize=6)
        ax.set_yticks(np.arange(len(shown)) + 0.5, shown, rotation=0, fontsize=6)
        ax.set_xlabel("key token (· a space, ⏎ a newline)")
        ax.set_ylabel("query token")
        ax.set_title(name, fontsize=9)
    fig.colorbar(axes.ravel()[0].collections[0], ax=axes, label="attention weight", shrink=0.6)
    fig.suptitle(title)
    return fig


def component_layer(values: np.ndarray, components: list[str], layers: list[int], title: str, label: str) -> Figure:
    """Component x layer heatmap (NaN where a component comes after the layer)."""
    fig, ax = plt.subplots(figsize=(1.6 + 0.6 * len(layers), 1.2 + 0.22 * len(components)))
    lim = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    sns.heatmap(
        values,
        ax=ax,
        cmap="RdBu_r",
        center=0,
        vmin=-lim,
        vmax=lim,
        annot=len(components) <= 40,
        fmt=".2f",
        annot_kws={"fontsize": 6},
        yticklabels=components,
        xticklabels=layers,
        cbar_kws={"label": label},
    )
    ax.set_xlabel("probe layer (0 = embeddings)")
    ax.set_ylabel("component")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def patching(frac: np.ndarray, components: list[str], title: str) -> Figure:
    """Component x word-token position heatmap of the recovered fraction."""
    fig, ax = plt.subplots(figsize=(1.8 + 0.6 * frac.shape[1], 1.2 + 0.25 * len(components)))
    sns.heatmap(
        frac,
        ax=ax,
        cmap="RdBu_r",
        center=0,
        vmin=-1,
        vmax=1,
        annot=len(components) <= 40,
        fmt=".2f",
        annot_kws={"fontsize": 7},
        yticklabels=components,
        cbar_kws={"label": "recovered fraction"},
    )
    ax.set_xlabel("token patched (0 = first token after the prefix; last = the probed token)")
    ax.set_ylabel("component patched (A into B)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def subspace_effects(rows: list[dict], title: str) -> Figure:
    """Loss change of each intervention on the probe subspace beside its random-subspace spread."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    labels = [r["label"] for r in rows]
    x = np.arange(len(rows))
    probe = [r["probe"] for r in rows]
    err = np.array([[r["probe"] - r["probe_lo"], r["probe_hi"] - r["probe"]] for r in rows]).T
    ax.bar(x - 0.2, probe, 0.4, yerr=err, color="tab:red", label="probe subspace (95% CI over prompts)")
    ax.bar(
        x + 0.2,
        [r["random_mean"] for r in rows],
        0.4,
        yerr=[r["random_sd"] for r in rows],
        color="tab:gray",
        label="random subspaces, same rank (mean ± sd)",
    )
    ax.set_xticks(x, labels, fontsize=8)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_ylabel("change in loss (nats/token)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def behaviour(rows: list[dict], end: str, unit: str, n_units: int, title: str) -> Figure:
    """The end token's mean probability after each unit, one line per prefix (``behaviour.behaviour``'s rows)."""
    fig, ax = plt.subplots(figsize=(10, 4.2), layout="constrained")
    width = 1
    for i, row in enumerate(rows):
        values = np.array([np.nan if v is None else v for v in row["by_unit"]], dtype=float)
        width = max(width, len(values))
        label = (
            f"prefix {row['prefix_id']} ({row['role']}): {row['at_end']:.2f} "
            f"[{row['at_end_ci'][0]:.2f}, {row['at_end_ci'][1]:.2f}] where it ends, {row['elsewhere']:.2f} elsewhere"
        )
        ax.plot(np.arange(len(values)), values, marker="o", color=f"C{i}", label=label)
    ax.axvline(n_units - 1, color="0.4", ls=":", lw=1)
    ax.set_xticks(range(width))
    ax.set_xlabel(f"{unit} just closed (dotted: the last of {n_units})")
    ax.set_ylabel(f"P(next token is {end!r})")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title, fontsize=10)
    return fig


def token_indices(tokens: list[str], layers: list[int], index: np.ndarray, title: str, per_row: int = 36) -> Figure:
    """Predicted label (number, and colour as in every figure) per token (column) and layer (row),
    the tokens wrapped into rows of ``per_row`` (the last row padded, so every cell has one
    width) so that the figure fits a 1,400-px window."""
    from matplotlib.colors import ListedColormap

    n_colours = int(index.max()) + 1
    cmap = ListedColormap(index_colours(n_colours))
    width_cells = min(per_row, len(tokens))
    chunks = [range(s, min(s + per_row, len(tokens))) for s in range(0, len(tokens), per_row)]
    width = min(WIDTH_IN, 1.5 + 0.32 * width_cells)
    fig, axes = plt.subplots(
        len(chunks), 1, figsize=(width, len(chunks) * (1.3 + 0.35 * len(layers)) + 0.6), squeeze=False
    )
    for ax, cols in zip(axes[:, 0], chunks, strict=True):
        part = np.full((len(layers), width_cells), np.nan)
        part[:, : len(cols)] = index[:, cols.start : cols.stop]
        text = np.where(np.isnan(part), "", np.nan_to_num(part).astype(int).astype(str))
        sns.heatmap(
            part,
            ax=ax,
            mask=np.isnan(part),
            cmap=cmap,
            vmin=-0.5,
            vmax=n_colours - 0.5,
            annot=text,
            fmt="",
            cbar=False,
            annot_kws={"fontsize": 7},
            yticklabels=layers,
        )
        shown = [visible(t) for t in tokens[cols.start : cols.stop]] + [""] * (width_cells - len(cols))
        ax.set_xticks(np.arange(width_cells) + 0.5, shown, rotation=90, fontsize=7)
        ax.set_ylabel("layer")
    axes[-1, 0].set_xlabel("token (· a space, ⏎ a newline); cell: the predicted label")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def notice(title: str, text: str) -> Figure:
    """A figure that only says something (a stage that does not apply to this model says why)."""
    fig, ax = plt.subplots(figsize=(7, 1.8))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=10)
    ax.set_title(title)
    return fig
