"""The ridge probe of an ordinal scheme (``char_in_line``'s characters since the newline), scored out of sample.

Counts are ordinal, so beside the classifier over binned counts a linear regression
reads the count itself: ``count ≈ (x - mean) / scale @ coef + intercept``, fitted on the
training prompts and scored by R² on the validation prompts (report/metrics.py; the
published probes of line-position counts report in-sample R², this one never does).
Baselines predict the training mean count at each absolute position, or at each value
of the nearer confound.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.linear_model import Ridge

from emergent_pos.io.files import atomic_path
from emergent_pos.probes.linear import feature_scaler


@dataclass
class RidgeProbe:
    """``predict(x) = (x - mean) / scale @ coef + intercept``."""

    coef: np.ndarray  # (d_model,)
    intercept: float
    mean: np.ndarray
    scale: np.ndarray

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.coef + self.intercept

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, coef=self.coef, intercept=self.intercept, mean=self.mean, scale=self.scale)

    @classmethod
    def load(cls, path: str | Path) -> RidgeProbe:
        with np.load(path, allow_pickle=False) as z:
            return cls(z["coef"], float(z["intercept"]), z["mean"], z["scale"])


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float, standardize: bool = True) -> RidgeProbe:
    mean, scale = feature_scaler(x, standardize)
    model = Ridge(alpha=alpha).fit((x - mean) / scale, y.astype(np.float64))
    return RidgeProbe(model.coef_.astype(np.float64), float(model.intercept_), mean, scale)


def mean_lookup(train_keys: np.ndarray, train_y: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """The training mean count at each key (an absolute position, a confound value); the overall
    mean for a key training never saw."""
    table: dict[int, list[float]] = {}
    for k, v in zip(train_keys.tolist(), train_y.tolist(), strict=True):
        table.setdefault(k, []).append(v)
    means = {k: float(np.mean(v)) for k, v in table.items()}
    overall = float(train_y.mean())
    return np.array([means.get(k, overall) for k in keys.tolist()])
