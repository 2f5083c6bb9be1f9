"""Per-layer word-index probes (scikit-learn logistic regression) and their baselines.

A probe reads one token per word (``last`` or ``first``) and predicts the word's index.
Two baselines see no activations: the majority class, and the best possible
position-only classifier (the most frequent word index at each absolute position in the
training prompts), so each layer's gain over what position alone gives is explicit.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler

from emergent_pos.atomic import atomic_path
from emergent_pos.config import ProbeConfig


@dataclass(frozen=True)
class Points:
    """The probed tokens of one split: table rows, labels and absolute positions."""

    rows: np.ndarray  # sorted row numbers into the prompts table (= activation rows)
    word_index: np.ndarray
    position: np.ndarray
    prompt_id: np.ndarray

    @classmethod
    def select(cls, prompts: pd.DataFrame, token: str) -> Points:
        flag = prompts.is_word_end if token == "last" else prompts.is_word_start
        sel = np.flatnonzero(flag.to_numpy() & (prompts.word_index.to_numpy() >= 0))
        return cls(
            rows=sel,
            word_index=prompts.word_index.to_numpy()[sel],
            position=prompts.position.to_numpy()[sel],
            prompt_id=prompts.prompt_id.to_numpy()[sel],
        )


@dataclass
class LinearProbe:
    """A fitted probe in portable form: ``predict(x) = argmax((x - mean) / scale @ coef.T + intercept)``."""

    coef: np.ndarray  # (n_classes, d_model); one row per class even for OvR
    intercept: np.ndarray  # (n_classes,)
    classes: np.ndarray
    mean: np.ndarray  # zeros when features are not standardised
    scale: np.ndarray  # ones when features are not standardised
    n_iter: int
    convergence_warnings: int

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.coef.T + self.intercept

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes[np.argmax(self.decision_function(x), axis=1)]

    def save(self, path: str | Path) -> None:
        """npz, never pickle: loadable anywhere with ``np.load(path)``."""
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    coef=self.coef,
                    intercept=self.intercept,
                    classes=self.classes,
                    mean=self.mean,
                    scale=self.scale,
                    n_iter=self.n_iter,
                    convergence_warnings=self.convergence_warnings,
                )

    @classmethod
    def load(cls, path: str | Path) -> LinearProbe:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                z["coef"],
                z["intercept"],
                z["classes"],
                z["mean"],
                z["scale"],
                int(z["n_iter"]),
                int(z["convergence_warnings"]),
            )


def sklearn_estimator(cfg: ProbeConfig) -> LogisticRegression | OneVsRestClassifier:
    """The configured estimator; ``ovr`` + ``saga`` + no scaling reproduces the seed's code."""
    lr = LogisticRegression(C=cfg.C, solver=cfg.solver, max_iter=cfg.max_iter, random_state=cfg.seed)
    return OneVsRestClassifier(lr) if cfg.multi_class == "ovr" else lr


def fit_probe(x: np.ndarray, y: np.ndarray, cfg: ProbeConfig) -> LinearProbe:
    """Fit with scikit-learn; convergence warnings are counted and reported, never hidden."""
    if cfg.standardize:
        scaler = StandardScaler().fit(x)
        mean, scale = scaler.mean_, scaler.scale_
    else:
        mean, scale = np.zeros(x.shape[1]), np.ones(x.shape[1])
    est = sklearn_estimator(cfg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        est.fit((x - mean) / scale, y)
    n_warn = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if isinstance(est, OneVsRestClassifier):
        coef = np.concatenate([e.coef_ for e in est.estimators_])
        intercept = np.concatenate([e.intercept_ for e in est.estimators_])
        n_iter = max(int(np.max(e.n_iter_)) for e in est.estimators_)
    else:
        coef, intercept, n_iter = est.coef_, est.intercept_, int(np.max(est.n_iter_))
    if len(est.classes_) == 2 and coef.shape[0] == 1:  # binary: one row -> two logits
        coef = np.concatenate([np.zeros_like(coef), coef])
        intercept = np.concatenate([np.zeros_like(intercept), intercept])
    return LinearProbe(coef, intercept, est.classes_, mean, scale, n_iter, n_warn)


@dataclass(frozen=True)
class PositionBaseline:
    """Most frequent word index at each absolute position seen in training."""

    table: dict[int, int]
    fallback: int

    @classmethod
    def fit(cls, position: np.ndarray, y: np.ndarray) -> PositionBaseline:
        table = {}
        for p in np.unique(position):
            table[int(p)] = int(np.bincount(y[position == p]).argmax())
        return cls(table, int(np.bincount(y).argmax()))

    def predict(self, position: np.ndarray) -> np.ndarray:
        return np.array([self.table.get(int(p), self.fallback) for p in position], dtype=np.int64)


def majority_class(y: np.ndarray) -> int:
    return int(np.bincount(y).argmax())
