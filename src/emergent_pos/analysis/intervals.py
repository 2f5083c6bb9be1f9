"""Intervals over prompts and spreads over control draws: every mechanism number carries one.

Tokens of one prompt share a context, so intervals resample whole prompts (or pairs).
"""

from __future__ import annotations

import numpy as np


def prompt_bootstrap(
    sums: np.ndarray, counts: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile intervals of ``sum / count`` when whole prompts are resampled.

    ``sums`` is ``[prompt, ...]``, ``counts`` ``[prompt, ...]`` broadcastable to it.
    """
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(sums), size=(n_boot, len(sums)))
    counts = np.broadcast_to(counts, sums.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        stats = np.stack([sums[d].sum(0) / counts[d].sum(0) for d in draws])
    lo, hi = np.nanquantile(stats, [0.025, 0.975], axis=0)
    return lo, hi


def mean_ci(
    values: np.ndarray, groups: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> dict[str, float | list[float]]:
    """Mean of per-item ``values`` and its 95% interval when whole ``groups`` are resampled."""
    ids, inverse = np.unique(groups, return_inverse=True)
    sums = np.bincount(inverse, weights=values, minlength=len(ids))
    counts = np.bincount(inverse, minlength=len(ids)).astype(float)
    lo, hi = prompt_bootstrap(sums, counts, n_boot, seed)
    return {"mean": float(values.mean()), "ci": [float(lo), float(hi)]}


def spread(values: list[float] | np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict[str, float | list[float]]:
    """Mean, standard deviation and range of a control's draws, with 95% intervals of the mean and
    the sd when the draws are resampled: is the control's spread itself pinned down?"""
    v = np.asarray(values, dtype=float)
    out: dict[str, float | list[float]] = {
        "n": len(v),
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
        "range": [float(v.min()), float(v.max())],
    }
    if len(v) > 2:
        draws = v[np.random.default_rng(seed).integers(0, len(v), size=(n_boot, len(v)))]
        out["mean_ci"] = [float(x) for x in np.quantile(draws.mean(1), [0.025, 0.975])]
        out["sd_ci"] = [float(x) for x in np.quantile(draws.std(1, ddof=1), [0.025, 0.975])]
    return out


def sds_above(probe: float, values: list[float] | np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict:
    """How many standard deviations of the random draws the probe's effect lies above their mean,
    with a 95% interval when the draws are resampled (None when the draws do not vary)."""
    v = np.asarray(values, dtype=float)
    sd = v.std(ddof=1) if len(v) > 1 else 0.0
    if sd <= 0:
        return {"value": None, "ci": None}
    draws = v[np.random.default_rng(seed).integers(0, len(v), size=(n_boot, len(v)))]
    sds = draws.std(1, ddof=1)
    ratios = (probe - draws.mean(1))[sds > 0] / sds[sds > 0]
    return {"value": float((probe - v.mean()) / sd), "ci": [float(x) for x in np.quantile(ratios, [0.025, 0.975])]}
