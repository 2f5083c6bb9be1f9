"""Accuracies and their breakdowns, with bootstrap intervals over validation prompts.

Points from one prompt are not independent (they share a context), so intervals resample
whole prompts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score

from emergent_pos.dataset.labels import LABEL, balanced_weights, cells
from emergent_pos.probes.predictions import (
    BASELINES,
    LAYER,
    MEAN_BASELINES,
    POSITION_CONTROL,
    PROBE,
    REGRESSION,
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
    """Accuracy and count per (absolute position, true label): the seed's eyeballed number."""
    rows = []
    for p in np.unique(position):
        for c in np.unique(y[position == p]):
            m = (position == p) & (y == c)
            rows.append(
                {
                    "position": int(p),
                    "label": int(c),
                    "n": int(m.sum()),
                    "accuracy": round(accuracy(y[m], pred[m]), 4),
                }
            )
    return rows


def column_accuracy(y: np.ndarray, pred: np.ndarray, position: np.ndarray) -> list[dict]:
    """Accuracy per absolute position, over whichever labels occur there."""
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


def main_set(pred: pd.DataFrame, n_units: int) -> pd.DataFrame:
    """The main evaluation set (training prefix, training unit count), on which headlines are computed."""
    return pred[(pred.prefix_id == 0) & (pred.n_units == n_units)].reset_index(drop=True)


def after_restart(points: pd.DataFrame) -> np.ndarray:
    """Points after the first place their prompt's label falls back (a paragraph's second
    sentence): where a probe must restart the count at a new anchor. ``points``: one
    layer's points, ordered by prompt and position."""
    same = points.prompt_id.to_numpy()[1:] == points.prompt_id.to_numpy()[:-1]
    falls = np.r_[False, same & (np.diff(points[LABEL].to_numpy()) < 0)]
    return pd.Series(falls).groupby(points.prompt_id.to_numpy()).cummax().to_numpy()


def _transfer(part: pd.DataFrame) -> dict:
    acc, ci = {}, {}
    for layer, g in part.groupby(LAYER):
        correct = g[LABEL].to_numpy() == g[PROBE].to_numpy()
        acc[str(layer)] = round(float(correct.mean()), 4)
        ci[str(layer)] = [round(v, 4) for v in bootstrap_ci(correct, g.prompt_id.to_numpy())]
    first = at_layer(part, layers(part)[0])
    correct = first[LABEL].to_numpy() == first.position_only.to_numpy()
    return {
        "accuracy": acc,
        "ci": ci,
        "position_only": round(float(correct.mean()), 4),
        "position_only_ci": [round(v, 4) for v in bootstrap_ci(correct, first.prompt_id.to_numpy())],
        "n_prompts": int(first.prompt_id.nunique()),
    }


def prefix_transfer(pred: pd.DataFrame, n_units: int) -> dict[str, dict]:
    """Accuracy of the probes (per layer, with prompt-bootstrap intervals) and of the
    position baseline on each prefix's prompts: does the count transfer across contexts?
    A set whose labels restart within a prompt (the paragraph variant) also gets the
    same numbers on the points after the restart alone (``after_restart``)."""
    out = {}
    for k, part in pred[pred.n_units == n_units].groupby("prefix_id"):
        part = part.sort_values([LAYER, "prompt_id", "position"], kind="stable")
        out[str(k)] = _transfer(part)
        restarted = np.concatenate([after_restart(g) for _, g in part.groupby(LAYER)])
        if restarted.any():
            out[str(k)]["after_restart"] = _transfer(part[restarted])
    return out


def weighted_accuracy(y: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> float:
    return float(np.sum((y == pred) * weights) / np.sum(weights)) if np.sum(weights) > 0 else float("nan")


def evaluate(pred: pd.DataFrame, heldout: pd.DataFrame | None = None) -> dict:
    """Headline numbers per layer, each with its control or baseline beside it.

    ``pred`` holds the main evaluation set (``main_set``), long format: accuracy and its
    prompt-bootstrap interval; position-balanced accuracy (balanced on absolute position
    and the scheme's nearer confound: every (cell, label) pair of a (position, confound)
    cell shared by two or more labels weighted equally: the exact expectation over random
    balanced subsamples) and its interval; selectivity against the best baseline; the
    position-shuffled control. ``heldout`` (prompts of training words) adds the probe's
    accuracy there and the word-type control's, with their difference. An ordinal scheme
    adds the ridge probe's out-of-sample R² with its interval (``regression``).
    """
    points = at_layer(pred, layers(pred)[0])
    y, position, pid = points[LABEL].to_numpy(), points.position.to_numpy(), points.prompt_id.to_numpy()
    w = balanced_weights(cells(position, points.confound.to_numpy()), y)

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

    baselines = {b: scored(points[b].to_numpy()) for b in BASELINES if b in points}
    best_base = max(b["accuracy"] for b in baselines.values())
    best_base_bal = max(b["balanced_accuracy"] for b in baselines.values())
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
                seen = held[label_column(WORD_CONTROL)].to_numpy() >= 0  # word types the control was fitted on
                control = accuracy(
                    held[label_column(WORD_CONTROL)].to_numpy()[seen], held[WORD_CONTROL].to_numpy()[seen]
                )
                r["word_control_accuracy"] = round(control, 4)
                r["word_control_points"] = int(seen.sum())
                r["word_control_selectivity"] = round(r["heldout_accuracy"] - control, 4)
        out[layer] = r
    result = {"layers": out, "baselines": baselines, "balanced_points": round(float(w.sum()), 1)}
    if REGRESSION in pred:
        result["regression"] = regression(pred)
    return result


def regression(pred: pd.DataFrame) -> dict:
    """An ordinal scheme's ridge probes: out-of-sample R² per layer with its prompt-bootstrap
    interval, beside the mean-count baselines' R² and the best of them."""
    points = at_layer(pred, layers(pred)[0])
    y, pid = points["count"].to_numpy().astype(float), points.prompt_id.to_numpy()

    def scored(p: np.ndarray) -> dict[str, float]:
        lo, hi = bootstrap_r2(y, p, pid)
        return {"r2": round(r2(y, p), 4), "r2_ci_low": round(lo, 4), "r2_ci_high": round(hi, 4)}

    baselines = {b: scored(points[b].to_numpy()) for b in MEAN_BASELINES}
    best = max(b["r2"] for b in baselines.values())
    per_layer = {}
    for layer in layers(pred):
        r = scored(at_layer(pred, layer)[REGRESSION].to_numpy())
        r["r2_over_best_baseline"] = round(r["r2"] - best, 4)
        per_layer[layer] = r
    return {"layers": per_layer, "baselines": baselines}


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    """Out-of-sample coefficient of determination (1 - SSE / SST around the scored set's own mean)."""
    sst = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - pred) ** 2)) / sst if sst > 0 else float("nan")


def bootstrap_r2(
    y: np.ndarray, pred: np.ndarray, prompt_id: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of R² when whole prompts are resampled."""
    ids, inverse = np.unique(prompt_id, return_inverse=True)
    n = len(ids)
    # per-prompt sums make each draw O(prompts): SSE, sum y, sum y², count
    sse = np.bincount(inverse, weights=(y - pred) ** 2, minlength=n)
    sy = np.bincount(inverse, weights=y, minlength=n)
    syy = np.bincount(inverse, weights=y * y, minlength=n)
    cnt = np.bincount(inverse, minlength=n).astype(float)
    draws = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    s_cnt, s_y, s_yy = cnt[draws].sum(1), sy[draws].sum(1), syy[draws].sum(1)
    sst = s_yy - s_y**2 / s_cnt
    stats = 1 - sse[draws].sum(1) / sst
    lo, hi = np.quantile(stats, [0.025, 0.975])
    return float(lo), float(hi)
