"""Accuracies and their breakdowns, with bootstrap intervals over validation prompts.

Points from one prompt are not independent (they share a context), so intervals resample
whole prompts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score

from emergent_pos.dataset.labels import LABEL, position_balanced
from emergent_pos.probes.predictions import BASELINES, CONTROL, CONTROL_LABEL, LAYER, PROBE, at_layer, layers


def accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(y == pred)) if len(y) else float("nan")


def bootstrap_ci(
    correct: np.ndarray, prompt_id: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of accuracy when prompts (not points) are resampled."""
    ids, inverse = np.unique(prompt_id, return_inverse=True)
    hits = np.bincount(inverse, weights=correct.astype(float), minlength=len(ids))
    counts = np.bincount(inverse, minlength=len(ids)).astype(float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(ids), size=(n_boot, len(ids)))
    acc = hits[draws].sum(axis=1) / counts[draws].sum(axis=1)
    lo, hi = np.quantile(acc, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def summary(y: np.ndarray, pred: np.ndarray, prompt_id: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Accuracy with its 95% interval and macro-F1."""
    lo, hi = bootstrap_ci(y == pred, prompt_id, seed=seed)
    return {
        "accuracy": round(accuracy(y, pred), 4),
        "accuracy_ci_low": round(lo, 4),
        "accuracy_ci_high": round(hi, 4),
        "macro_f1": round(float(f1_score(y, pred, average="macro")), 4),
    }


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


def main_prefix(pred: pd.DataFrame) -> pd.DataFrame:
    """Validation points of the training prefix (prefix_id 0), on which headlines are computed."""
    return pred[pred.prefix_id == 0].reset_index(drop=True)


def prefix_transfer(pred: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Accuracy of the probes (trained on prefix 0) and of the position baseline on each prefix."""
    out = {}
    for k, part in pred.groupby("prefix_id"):
        row = {
            f"layer_{layer:02d}": round(accuracy(g[LABEL].to_numpy(), g[PROBE].to_numpy()), 4)
            for layer, g in part.groupby(LAYER)
        }
        first = at_layer(part, layers(part)[0])
        row["position_only"] = round(accuracy(first[LABEL].to_numpy(), first.position_only.to_numpy()), 4)
        out[str(k)] = row
    return out


def evaluate(pred: pd.DataFrame) -> dict:
    """Headline numbers per layer: plain and position-balanced accuracy, the control task,
    and selectivity (probe accuracy minus the best baseline, and minus the control probe).

    ``pred`` holds one prefix's points (see ``main_prefix``), long format. The balanced
    subset is drawn with a fixed seed, so every run (whatever its probe seed) scores the
    same points.
    """
    points = at_layer(pred, layers(pred)[0])
    y, position = points[LABEL].to_numpy(), points.position.to_numpy()
    bal = position_balanced(position, y, np.random.default_rng([0, 0xBA1]))

    def both(p: np.ndarray) -> dict[str, float]:
        return {"accuracy": round(accuracy(y, p), 4), "balanced_accuracy": round(accuracy(y[bal], p[bal]), 4)}

    baselines = {b: both(points[b].to_numpy()) for b in BASELINES}
    best_base = max(baselines[b]["accuracy"] for b in BASELINES)
    best_base_bal = max(baselines[b]["balanced_accuracy"] for b in BASELINES)
    out = {}
    for layer in layers(pred):
        part = at_layer(pred, layer)
        r = both(part[PROBE].to_numpy())
        r["selectivity"] = round(r["accuracy"] - best_base, 4)
        r["balanced_selectivity"] = round(r["balanced_accuracy"] - best_base_bal, 4)
        if CONTROL in part:
            control = accuracy(part[CONTROL_LABEL].to_numpy(), part[CONTROL].to_numpy())
            r["control_accuracy"] = round(control, 4)
            r["control_selectivity"] = round(r["accuracy"] - control, 4)
        out[layer] = r
    return {"layers": out, "baselines": baselines, "n_balanced": int(len(bal))}
