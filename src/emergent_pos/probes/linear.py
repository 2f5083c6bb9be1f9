"""The linear probe in portable form, and its fit with either backend.

A fitted probe is four arrays and one formula,
``logits = (x - mean) / scale @ coef.T + intercept``, saved as an ``.npz`` that loads
anywhere with ``np.load`` (never pickle).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler

from emergent_pos.io.files import atomic_path
from emergent_pos.model.hooks import residual_hooks
from emergent_pos.probes.config import ProbeConfig
from emergent_pos.probes.predictions import PROBES_DIR, probe_path
from emergent_pos.probes.torch_solver import TorchLogisticRegression


@dataclass
class LinearProbe:
    """A fitted probe: ``predict(x) = classes[argmax((x - mean) / scale @ coef.T + intercept)]``."""

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


def feature_scaler(x: np.ndarray, standardize: bool) -> tuple[np.ndarray, np.ndarray]:
    """Training mean and std as scikit-learn's StandardScaler computes them (identity when off)."""
    if not standardize:
        return np.zeros(x.shape[1]), np.ones(x.shape[1])
    scaler = StandardScaler().fit(x)
    return scaler.mean_, scaler.scale_


def estimator(
    cfg: ProbeConfig, device: str = "cpu"
) -> LogisticRegression | OneVsRestClassifier | TorchLogisticRegression:
    """The configured estimator; ``ovr`` + ``saga`` + no scaling reproduces the seed's code."""
    if cfg.backend == "torch":
        return TorchLogisticRegression(C=cfg.C, max_iter=cfg.max_iter, tol=cfg.tol, device=device)
    lr = LogisticRegression(C=cfg.C, solver=cfg.solver, max_iter=cfg.max_iter, tol=cfg.tol, random_state=cfg.seed)
    return OneVsRestClassifier(lr) if cfg.multi_class == "ovr" else lr


def fit_probe(x: np.ndarray, y: np.ndarray, cfg: ProbeConfig, device: str = "cpu") -> LinearProbe:
    """Fit with the configured backend; convergence warnings are counted and reported, never hidden."""
    mean, scale = feature_scaler(x, cfg.standardize)
    est = estimator(cfg, device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        est.fit((x - mean) / scale, y)
    n_warn = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    if isinstance(est, TorchLogisticRegression) and not est.converged_:
        n_warn += 1  # L-BFGS stopped on the iteration cap (or stalled), not on its tolerance
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


def load_probes(
    n_layers: int, layers: list[int] | None = None, root: str | Path = PROBES_DIR
) -> dict[int, LinearProbe]:
    """The saved probe of each layer (0 = embeddings), keyed by layer."""
    hooks = residual_hooks(n_layers)
    chosen = range(len(hooks)) if layers is None else layers
    return {layer: LinearProbe.load(probe_path(hooks[layer], root)) for layer in chosen}
