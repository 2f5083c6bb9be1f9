"""Per-layer word-index probes (scikit-learn logistic regression), baselines and controls.

A probe reads tokens of each word (``last``, ``first`` or ``all``) and predicts the
word's index. Baselines see no activations: the majority class; the best possible
position-only classifier (the most frequent word index at each absolute position in the
training prompts); and position plus "this token begins with a space" (the seed's
suspected shortcut: a last token that begins with a space is a one-token word). The
control task (Hewitt & Liang 2019) trains the same probe on labels shuffled within each
absolute position, which measures what the probe's capacity gets from position alone.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from emergent_pos.atomic import atomic_path
from emergent_pos.config import ProbeConfig
from emergent_pos.metrics import accuracy, position_balanced
from emergent_pos.store import layer_path, read_rows
from emergent_pos.torch_probe import TorchLogisticRegression

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Points:
    """The probed tokens of one split: table rows, labels and absolute positions."""

    rows: np.ndarray  # sorted row numbers into the prompts table (= activation rows)
    word_index: np.ndarray
    position: np.ndarray
    prompt_id: np.ndarray
    starts_word: np.ndarray  # the token begins with a space (first token of its word)
    prefix_id: np.ndarray  # 0 = prompts.prefix; others are evaluation prefixes

    @classmethod
    def select(cls, prompts: pd.DataFrame, token: str) -> Points:
        in_word = prompts.word_index.to_numpy() >= 0
        flag = {"last": prompts.is_word_end.to_numpy(), "first": prompts.is_word_start.to_numpy(), "all": in_word}
        sel = np.flatnonzero(flag[token] & in_word)
        return cls(
            rows=sel,
            word_index=prompts.word_index.to_numpy()[sel],
            position=prompts.position.to_numpy()[sel],
            prompt_id=prompts.prompt_id.to_numpy()[sel],
            starts_word=prompts.is_word_start.to_numpy()[sel],
            prefix_id=prompts.prefix_id.to_numpy()[sel],
        )

    def take(self, idx: np.ndarray) -> Points:
        return Points(**{f: getattr(self, f)[idx] for f in self.__dataclass_fields__})


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


def estimator(
    cfg: ProbeConfig, device: str = "cpu"
) -> LogisticRegression | OneVsRestClassifier | TorchLogisticRegression:
    """The configured estimator; ``ovr`` + ``saga`` + no scaling reproduces the seed's code."""
    if cfg.backend == "torch":
        return TorchLogisticRegression(C=cfg.C, max_iter=cfg.max_iter, device=device)
    lr = LogisticRegression(C=cfg.C, solver=cfg.solver, max_iter=cfg.max_iter, random_state=cfg.seed)
    return OneVsRestClassifier(lr) if cfg.multi_class == "ovr" else lr


def fit_probe(x: np.ndarray, y: np.ndarray, cfg: ProbeConfig, device: str = "cpu") -> LinearProbe:
    """Fit with the configured backend; convergence warnings are counted and reported, never hidden."""
    if cfg.standardize:
        scaler = StandardScaler().fit(x)
        mean, scale = scaler.mean_, scaler.scale_
    else:
        mean, scale = np.zeros(x.shape[1]), np.ones(x.shape[1])
    est = estimator(cfg, device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        est.fit((x - mean) / scale, y)
    n_warn = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    if isinstance(est, TorchLogisticRegression) and est.n_iter_[0] >= cfg.max_iter:
        n_warn += 1  # L-BFGS stopped on the iteration cap, not on its tolerance
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
class LookupBaseline:
    """Most frequent word index for each value of some token features (no activations)."""

    table: dict[tuple[int, ...], int]
    fallback: int

    @classmethod
    def fit(cls, keys: np.ndarray, y: np.ndarray) -> LookupBaseline:
        table: dict[tuple[int, ...], np.ndarray] = {}
        for key, label in zip(map(tuple, keys.tolist()), y.tolist(), strict=True):
            table.setdefault(key, np.zeros(int(y.max()) + 1, dtype=np.int64))[label] += 1
        return cls({k: int(v.argmax()) for k, v in table.items()}, majority_class(y))

    def predict(self, keys: np.ndarray) -> np.ndarray:
        return np.array([self.table.get(k, self.fallback) for k in map(tuple, keys.tolist())], dtype=np.int64)


def baseline_keys(points: Points) -> dict[str, np.ndarray]:
    """Features of each baseline: absolute position, and position plus begins-with-a-space."""
    return {
        "position_only": points.position[:, None],
        "position_and_space": np.stack([points.position, points.starts_word.astype(np.int64)], axis=1),
    }


def is_stochastic(cfg: ProbeConfig) -> bool:
    """Solvers whose result depends on ``random_state`` (scikit-learn's sag and saga)."""
    return cfg.backend == "sklearn" and cfg.solver in ("sag", "saga")


def majority_class(y: np.ndarray) -> int:
    return int(np.bincount(y).argmax())


def shuffle_within(groups: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Control-task labels: ``y`` permuted among the points that share a group (position)."""
    out = y.copy()
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        out[idx] = y[rng.permutation(idx)]
    return out


@dataclass(frozen=True)
class Split:
    """One split's probed points and where its activations live."""

    points: Points
    act_dir: Path
    sha256: str
    n_tokens: int

    def features(self, layer: int) -> np.ndarray:
        return read_rows(layer_path(self.act_dir, layer), self.points.rows, self.sha256, self.n_tokens)


def probe_layers(
    train: Split, val: Split, n_streams: int, cfg: ProbeConfig, out: Path, device: str = "cpu"
) -> tuple[pd.DataFrame, dict]:
    """Fit (and save) a probe per layer, plus baselines and the control task.

    Returns the validation predictions of everything (one column each) and per-layer
    training facts. Only one layer's matrices are in memory at a time.
    """
    rng = np.random.default_rng([cfg.seed, 0xC0])
    tr, va = train.points, val.points
    fit_idx = np.arange(len(tr.rows))
    if cfg.train_balance == "position":
        fit_idx = position_balanced(tr.position, tr.word_index, rng)
        logger.info("position-balanced training subset: %d of %d points", len(fit_idx), len(tr.rows))
    y_fit = tr.word_index[fit_idx]
    pred: dict[str, np.ndarray] = {
        "prompt_id": va.prompt_id,
        "prefix_id": va.prefix_id,
        "position": va.position,
        "word_index": va.word_index,
        "starts_word": va.starts_word,
        "majority": np.full(len(va.rows), majority_class(y_fit)),
    }
    train_keys, val_keys = baseline_keys(tr.take(fit_idx)), baseline_keys(va)
    for name, keys in train_keys.items():
        pred[name] = LookupBaseline.fit(keys, y_fit).predict(val_keys[name])
    if cfg.control:
        y_control = shuffle_within(tr.position[fit_idx], y_fit, rng)
        pred["control_label"] = shuffle_within(va.position * 1000 + va.prefix_id, va.word_index, rng)
    layers = {}
    for layer in tqdm(range(n_streams), desc="probes", unit="layer"):
        x_fit = train.features(layer)[fit_idx]
        x_val = val.features(layer)
        t0 = time.perf_counter()
        probe = fit_probe(x_fit, y_fit, cfg, device)
        probe.save(out / f"layer_{layer:02d}.npz")
        pred[f"layer_{layer:02d}"] = probe.predict(x_val)
        info = {
            "train_accuracy": round(accuracy(y_fit, probe.predict(x_fit)), 4),
            "n_iter": probe.n_iter,
            "convergence_warnings": probe.convergence_warnings,
        }
        if is_stochastic(cfg) and cfg.seeds > 1:
            # the spread over solver seeds, on the main prefix's validation points
            main = va.prefix_id == 0
            accs = [accuracy(va.word_index[main], pred[f"layer_{layer:02d}"][main])]
            for s in range(1, cfg.seeds):
                other = fit_probe(x_fit, y_fit, dataclasses.replace(cfg, seed=cfg.seed + s), device)
                accs.append(accuracy(va.word_index[main], other.predict(x_val[main])))
                info["convergence_warnings"] += other.convergence_warnings
            info["seed_accuracies"] = [round(a, 4) for a in accs]
            info["seed_accuracy_std"] = round(float(np.std(accs)), 4)
        if cfg.control:
            control = fit_probe(x_fit, y_control, cfg, device)
            pred[f"control_{layer:02d}"] = control.predict(x_val)
            info["convergence_warnings"] += control.convergence_warnings
        layers[layer] = info
        logger.info(
            "layer %d: val accuracy %.3f, fits %.1fs, %d iterations, %d convergence warnings",
            layer,
            accuracy(va.word_index, pred[f"layer_{layer:02d}"]),
            time.perf_counter() - t0,
            probe.n_iter,
            info["convergence_warnings"],
        )
    return pd.DataFrame(pred), layers
