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
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from joblib import Parallel, delayed, parallel_config
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from emergent_pos.atomic import atomic_path
from emergent_pos.config import ProbeConfig
from emergent_pos.metrics import accuracy, position_balanced
from emergent_pos.prompts import file_hash
from emergent_pos.store import layer_path, read_meta, read_rows
from emergent_pos.torch_probe import TorchLogisticRegression, fit_multinomial

logger = logging.getLogger(__name__)

# Training features of the layers solved in one batch by the torch backend.
TORCH_GROUP_BYTES_CPU = 256 << 20
TORCH_GROUP_BYTES_CUDA = 4 << 30
# scikit-learn solvers that gain nothing from a second BLAS thread (lbfgs is 3x faster on
# one: benchmarks/probes.py), so the stage runs layers in parallel processes instead
SINGLE_THREADED = ("lbfgs", "liblinear", "sag", "saga")
# A worker takes seconds to start (it imports torch and scikit-learn): fits smaller than
# this (points x features; the toy organism's are 1.3M) run in the stage's own process.
PARALLEL_MIN_FIT_SIZE = 200_000


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

    @classmethod
    def load(cls, prompts_path: str | Path, act_dir: str | Path, token: str) -> Split:
        """A split as the pipeline lays it out: its prompts table and its activations directory."""
        table = pd.read_parquet(prompts_path)
        return cls(Points.select(table, token), Path(act_dir), file_hash(prompts_path), len(table))

    def features(self, layer: int) -> np.ndarray:
        return read_rows(layer_path(self.act_dir, layer), self.points.rows, self.sha256, self.n_tokens)


@dataclass(frozen=True)
class LayerResult:
    """What fitting one layer gives: validation prediction columns and training facts."""

    layer: int
    columns: dict[str, np.ndarray]
    info: dict
    seconds: float


@dataclass(frozen=True)
class ProbeJob:
    """Everything a layer's fits need; picklable, so worker processes read their own layer."""

    train: Split
    val: Split
    fit_idx: np.ndarray
    y_fit: np.ndarray
    y_control: np.ndarray | None
    cfg: ProbeConfig
    out: Path

    def finish(self, layer: int, probe: LinearProbe, x_fit: np.ndarray, x_val: np.ndarray) -> tuple[dict, dict]:
        """Save the probe; its validation predictions and training facts."""
        probe.save(self.out / f"layer_{layer:02d}.npz")
        columns = {f"layer_{layer:02d}": probe.predict(x_val)}
        info = {
            "train_accuracy": round(accuracy(self.y_fit, probe.predict(x_fit)), 4),
            "n_iter": probe.n_iter,
            "convergence_warnings": probe.convergence_warnings,
        }
        return columns, info

    def sklearn_layer(self, layer: int) -> LayerResult:
        """Probe, extra solver seeds and control task of one layer with scikit-learn."""
        t0 = time.perf_counter()
        x_fit = self.train.features(layer)[self.fit_idx]
        x_val = self.val.features(layer)
        probe = fit_probe(x_fit, self.y_fit, self.cfg)
        columns, info = self.finish(layer, probe, x_fit, x_val)
        cfg, va = self.cfg, self.val.points
        if is_stochastic(cfg) and cfg.seeds > 1:
            # the spread over solver seeds, on the main prefix's validation points
            main = va.prefix_id == 0
            accs = [accuracy(va.word_index[main], columns[f"layer_{layer:02d}"][main])]
            for s in range(1, cfg.seeds):
                other = fit_probe(x_fit, self.y_fit, dataclasses.replace(cfg, seed=cfg.seed + s))
                accs.append(accuracy(va.word_index[main], other.predict(x_val[main])))
                info["convergence_warnings"] += other.convergence_warnings
            info["seed_accuracies"] = [round(a, 4) for a in accs]
            info["seed_accuracy_std"] = round(float(np.std(accs)), 4)
        if self.y_control is not None:
            control = fit_probe(x_fit, self.y_control, cfg)
            columns[f"control_{layer:02d}"] = control.predict(x_val)
            info["convergence_warnings"] += control.convergence_warnings
        return LayerResult(layer, columns, info, time.perf_counter() - t0)

    def torch_layers(self, layers: list[int], device: str) -> list[LayerResult]:
        """Probe and control task of several layers in one batched solve (see torch_probe)."""
        t0 = time.perf_counter()
        classes, y_idx = np.unique(self.y_fit, return_inverse=True)
        label_sets = [y_idx]
        if self.y_control is not None:
            label_sets.append(np.searchsorted(classes, self.y_control))
        raw = [self.train.features(layer)[self.fit_idx] for layer in layers]
        scalers = [feature_scaler(x, self.cfg.standardize) for x in raw]
        dev = torch.device(device)
        x_t = torch.from_numpy(
            np.stack([((x - mean) / scale).astype(np.float32) for x, (mean, scale) in zip(raw, scalers, strict=True)])
        ).to(dev)
        y_t = torch.from_numpy(np.stack(label_sets)).to(dev).expand(len(layers), -1, -1)
        fit = fit_multinomial(x_t, y_t, len(classes), self.cfg.C, tol=self.cfg.tol, max_iter=self.cfg.max_iter)
        del x_t
        coef, intercept = fit.coef.double().cpu().numpy(), fit.intercept.double().cpu().numpy()
        n_iter, converged = fit.n_iter.cpu().numpy(), fit.converged.cpu().numpy()
        per_layer = (time.perf_counter() - t0) / len(layers)
        results = []
        for g, layer in enumerate(layers):
            mean, scale = scalers[g]
            probes = [
                LinearProbe(
                    coef[g, j], intercept[g, j], classes, mean, scale, int(n_iter[g, j]), int(not converged[g, j])
                )
                for j in range(len(label_sets))
            ]
            x_val = self.val.features(layer)
            columns, info = self.finish(layer, probes[0], raw[g], x_val)
            if self.y_control is not None:
                columns[f"control_{layer:02d}"] = probes[1].predict(x_val)
                info["convergence_warnings"] += probes[1].convergence_warnings
            results.append(LayerResult(layer, columns, info, per_layer))
        return results


def feature_scaler(x: np.ndarray, standardize: bool) -> tuple[np.ndarray, np.ndarray]:
    """Training mean and std as scikit-learn's StandardScaler computes them (identity when off)."""
    if not standardize:
        return np.zeros(x.shape[1]), np.ones(x.shape[1])
    scaler = StandardScaler().fit(x)
    return scaler.mean_, scaler.scale_


def torch_groups(n_streams: int, bytes_per_layer: int, device: str) -> list[list[int]]:
    """Layers solved together: as many as fit a feature budget (GPU memory is the reason to batch)."""
    budget = TORCH_GROUP_BYTES_CUDA if device.startswith("cuda") else TORCH_GROUP_BYTES_CPU
    size = max(1, min(n_streams, budget // max(1, bytes_per_layer)))
    return [list(range(i, min(i + size, n_streams))) for i in range(0, n_streams, size)]


def sklearn_jobs(cfg: ProbeConfig, n_streams: int, fit_size: int, requested: int | None) -> int:
    """Worker processes for scikit-learn fits: one per core for the solvers in SINGLE_THREADED,
    when a fit (``fit_size`` = points x features) is big enough to repay a worker's start-up."""
    if requested is not None:
        return max(1, min(requested, n_streams))
    if cfg.solver not in SINGLE_THREADED or fit_size < PARALLEL_MIN_FIT_SIZE:
        return 1
    return max(1, min(available_cores(), n_streams))


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def parallel_layers(job: ProbeJob, n_streams: int, n_jobs: int) -> Iterator[LayerResult]:
    """``job.sklearn_layer`` over layers in ``n_jobs`` processes, in layer order, as they finish."""
    threads = max(1, available_cores() // n_jobs)
    with parallel_config(backend="loky", inner_max_num_threads=threads):
        yield from Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(job.sklearn_layer)(layer) for layer in range(n_streams)
        )


def probe_layers(
    train: Split,
    val: Split,
    n_streams: int,
    cfg: ProbeConfig,
    out: Path,
    device: str = "cpu",
    jobs: int | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Fit (and save) a probe per layer, plus baselines and the control task.

    Returns the validation predictions of everything (one column each) and per-layer
    training facts. scikit-learn fits run one layer per worker process (``jobs``; by
    default one per core for the solvers in SINGLE_THREADED, each worker limited to its
    share of BLAS threads so the cores are not oversubscribed); the torch backend solves
    groups of layers at once on ``device``. Features are in memory only for the layers
    being fitted (one per worker, or one torch group).
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
    y_control = None
    if cfg.control:
        y_control = shuffle_within(tr.position[fit_idx], y_fit, rng)
        pred["control_label"] = shuffle_within(va.position * 1000 + va.prefix_id, va.word_index, rng)
    job = ProbeJob(train, val, fit_idx, y_fit, y_control, cfg, out)
    results: Iterator[LayerResult]
    d_model = read_meta(layer_path(train.act_dir, 0)).d_model
    if cfg.backend == "torch":
        groups = torch_groups(n_streams, len(fit_idx) * d_model * 4, device)
        logger.info(
            "torch backend on %s: layers in %d batched solve(s) of up to %d", device, len(groups), len(groups[0])
        )
        results = (r for group in groups for r in job.torch_layers(group, device))
    else:
        n_jobs = sklearn_jobs(cfg, n_streams, len(fit_idx) * d_model, jobs)
        logger.info("scikit-learn %s: %d layer(s) at a time", cfg.solver, n_jobs)
        if n_jobs == 1:
            results = (job.sklearn_layer(layer) for layer in range(n_streams))
        else:
            results = parallel_layers(job, n_streams, n_jobs)
    layers = {}
    for r in tqdm(results, total=n_streams, desc="probes", unit="layer"):
        pred.update(r.columns)
        layers[r.layer] = r.info
        logger.info(
            "layer %d: val accuracy %.3f, fits %.1fs, %d iterations, %d convergence warnings",
            r.layer,
            accuracy(va.word_index, pred[f"layer_{r.layer:02d}"]),
            r.seconds,
            r.info["n_iter"],
            r.info["convergence_warnings"],
        )
    return pd.DataFrame(pred), layers
