"""Accuracies and their breakdowns, with bootstrap intervals over validation prompts.

Points from one prompt are not independent (they share a context), so intervals resample
whole prompts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score

from emergent_pos.dataset.labels import LABEL, balanced_weights
from emergent_pos.probes.predictions import (
    BASELINES,
    LAYER,
    POSITION_CONTROL,
    PROBE,
    WORD_CONTROL,
    at_layer,
    label_column,
    layers,
)

HEADLINE_COLUMNS = (
    "hook",
    "accuracy",
    "accuracy_ci_low",
    "accuracy_ci_high",
    "balanced_accuracy",
    "balanced_ci_low",
    "balanced_ci_high",
    "position_control_accuracy",
    "heldout_accuracy",
    "word_control_accuracy",
    "selectivity",
)
"""Per-layer columns of README's headline table (metrics/probes.json's ``layers`` list)."""


def accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(y == pred)) if len(y) else float("nan")


def bootstrap_ci(
    correct: np.ndarray,
    prompt_id: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    weights: np.ndarray | None = None,
) -> tuple[float, float]:
    """Percentile interval of (weighted) accuracy when prompts (not points) are resampled."""
    w = np.ones(len(correct)) if weights is None else weights
    ids, inverse = np.unique(prompt_id, return_inverse=True)
    hits = np.bincount(inverse, weights=correct.astype(float) * w, minlength=len(ids))
    counts = np.bincount(inverse, weights=w, minlength=len(ids))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(ids), size=(n_boot, len(ids)))
    acc = hits[draws].sum(axis=1) / counts[draws].sum(axis=1)
    lo, hi = np.quantile(acc, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    return round(float(f1_score(y, pred, average="macro")), 4)


def per_class_accuracy(y: np.ndarray, pred: np.ndarray, n_classes: int) -> list[float | None]:
    return [round(accuracy(y[y == c], pred[y == c]), 4) if np.any(y == c) else None for c in range(n_classes)]


def position_table(y: np.ndarray, pred: np.ndarray, position: np.ndarray) -> list[dict]:
    """Accuracy and count per (absolute position, true word index): the seed's eyeballed number."""
    rows = []
    for p in np.unique(position):
        for c in np.unique(y[position == p]):
            m = (position == p) & (y == c)
            rows.append(
                {
                    "position": int(p),
                    "word_index": int(c),
                    "n": int(m.sum()),
                    "accuracy": round(accuracy(y[m], pred[m]), 4),
                }
            )
    return rows


def column_accuracy(y: np.ndarray, pred: np.ndarray, position: np.ndarray) -> list[dict]:
    """Accuracy per absolute position, over whichever word indices occur there."""
    return [
        {
            "position": int(p),
            "n": int((position == p).sum()),
            "accuracy": round(accuracy(y[position == p], pred[position == p]), 4),
        }
        for p in np.unique(position)
    ]


def normalized_confusion(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows = true index, columns = predicted; each row sums to 1 (0 for an empty row)."""
    cm = confusion_matrix(y, pred, labels=list(range(n_classes))).astype(float)
    totals = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)


def main_set(pred: pd.DataFrame, n_words: int) -> pd.DataFrame:
    """The main evaluation set (training prefix, training word count), on which headlines are computed."""
    return pred[(pred.prefix_id == 0) & (pred.n_words == n_words)].reset_index(drop=True)


def prefix_transfer(pred: pd.DataFrame, n_words: int) -> dict[str, dict[str, float]]:
    """Accuracy of the probes (trained on prefix 0) and of the position baseline on each prefix."""
    out = {}
    for k, part in pred[pred.n_words == n_words].groupby("prefix_id"):
        row = {
            f"layer_{layer:02d}": round(accuracy(g[LABEL].to_numpy(), g[PROBE].to_numpy()), 4)
            for layer, g in part.groupby(LAYER)
        }
        first = at_layer(part, layers(part)[0])
        row["position_only"] = round(accuracy(first[LABEL].to_numpy(), first.position_only.to_numpy()), 4)
        out[str(k)] = row
    return out


def weighted_accuracy(y: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> float:
    return float(np.sum((y == pred) * weights) / np.sum(weights)) if np.sum(weights) > 0 else float("nan")


def evaluate(pred: pd.DataFrame, heldout: pd.DataFrame | None = None) -> dict:
    """Headline numbers per layer, each with its control or baseline beside it.

    ``pred`` holds the main evaluation set (``main_set``), long format: accuracy and its
    prompt-bootstrap interval; position-balanced accuracy (every (position, index) cell at
    a position shared by two or more indices weighted equally: the exact expectation over
    random balanced subsamples) and its interval; selectivity against the best baseline;
    the position-shuffled control. ``heldout`` (prompts of training words) adds the
    probe's accuracy there and the word-type control's, with their difference.
    """
    points = at_layer(pred, layers(pred)[0])
    y, position, pid = points[LABEL].to_numpy(), points.position.to_numpy(), points.prompt_id.to_numpy()
    w = balanced_weights(position, y)

    def scored(p: np.ndarray) -> dict[str, float]:
        lo, hi = bootstrap_ci(y == p, pid)
        blo, bhi = bootstrap_ci(y == p, pid, weights=w)
        return {
            "accuracy": round(accuracy(y, p), 4),
            "accuracy_ci_low": round(lo, 4),
            "accuracy_ci_high": round(hi, 4),
            "balanced_accuracy": round(weighted_accuracy(y, p, w), 4),
            "balanced_ci_low": round(blo, 4),
            "balanced_ci_high": round(bhi, 4),
        }

    baselines = {b: scored(points[b].to_numpy()) for b in BASELINES}
    best_base = max(baselines[b]["accuracy"] for b in BASELINES)
    best_base_bal = max(baselines[b]["balanced_accuracy"] for b in BASELINES)
    out = {}
    for layer in layers(pred):
        part = at_layer(pred, layer)
        r = scored(part[PROBE].to_numpy())
        r["selectivity"] = round(r["accuracy"] - best_base, 4)
        r["balanced_selectivity"] = round(r["balanced_accuracy"] - best_base_bal, 4)
        if POSITION_CONTROL in part:
            control = accuracy(part[label_column(POSITION_CONTROL)].to_numpy(), part[POSITION_CONTROL].to_numpy())
            r["position_control_accuracy"] = round(control, 4)
            r["position_control_selectivity"] = round(r["accuracy"] - control, 4)
        if heldout is not None:
            held = at_layer(heldout, layer)
            r["heldout_accuracy"] = round(accuracy(held[LABEL].to_numpy(), held[PROBE].to_numpy()), 4)
            if WORD_CONTROL in held:
                control = accuracy(held[label_column(WORD_CONTROL)].to_numpy(), held[WORD_CONTROL].to_numpy())
                r["word_control_accuracy"] = round(control, 4)
                r["word_control_selectivity"] = round(r["heldout_accuracy"] - control, 4)
        out[layer] = r
    return {"layers": out, "baselines": baselines, "balanced_points": round(float(w.sum()), 1)}
