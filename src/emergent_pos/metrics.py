"""Accuracies and their breakdowns, with bootstrap intervals over validation prompts.

Points from one prompt are not independent (they share a context), so intervals resample
whole prompts.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score


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


def normalized_confusion(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows = true index, columns = predicted; each row sums to 1 (0 for an empty row)."""
    cm = confusion_matrix(y, pred, labels=list(range(n_classes))).astype(float)
    totals = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
