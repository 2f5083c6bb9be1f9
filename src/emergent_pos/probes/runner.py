"""The per-layer runner: probes, controls and baselines for every residual stream.

One runner, two backends behind one interface (``Backend.fit``): scikit-learn fits a
layer per worker process; torch solves groups of layers in one batched solve. The
runner does everything else once: which points are fitted, the controls' labels,
baselines, saving probes, validation predictions and fit facts.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from joblib import Parallel, delayed, parallel_config
from tqdm import tqdm

from emergent_pos.activations.store import hook_path, read_meta, read_rows
from emergent_pos.dataset.labels import Points, TokenChoice, cells, position_balanced
from emergent_pos.dataset.schemes import SCHEMES
from emergent_pos.io.files import file_sha256, read_parquet
from emergent_pos.model.hooks import layer_of
from emergent_pos.probes.baselines import baseline_predictions, shuffle_within, word_type_labels
from emergent_pos.probes.config import ProbeConfig
from emergent_pos.probes.linear import LinearProbe, feature_scaler, fit_probe
from emergent_pos.probes.predictions import (
    POSITION_CONTROL,
    PROBE,
    REGRESSION,
    WORD_CONTROL,
    label_column,
    long_table,
    point_frame,
    probe_path,
    ridge_path,
)
from emergent_pos.probes.regression import fit_ridge, mean_lookup
from emergent_pos.probes.torch_solver import fit_multinomial

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
class Split:
    """One split's probed points and where its activations live."""

    points: Points
    act_dir: Path
    sha256: str
    n_tokens: int

    ordinal: bool  # the scheme's label is a count (a ridge probe reads it beside the classifier)

    @classmethod
    def load(cls, prompts_path: str | Path, act_dir: str | Path, token: TokenChoice, bin_width: int = 1) -> Split:
        """A split as the pipeline lays it out: its prompts table and its activations directory."""
        table = read_parquet(prompts_path)
        ordinal = SCHEMES[str(table.scheme.iloc[0])].ordinal if len(table) else False
        points = Points.select(table, token, bin_width if ordinal else 1)
        return cls(points, Path(act_dir), file_sha256(prompts_path), len(table), ordinal)

    def features(self, hook: str) -> np.ndarray:
        return read_rows(hook_path(self.act_dir, hook), self.points.rows, self.sha256, self.n_tokens)


@dataclass(frozen=True)
class TrainingSet:
    """What every backend fits, per layer: picklable, so worker processes read their own layer."""

    split: Split
    fit_idx: np.ndarray  # which of the split's points are fitted
    y: np.ndarray
    controls: dict[str, np.ndarray]  # each control's labels of the same points
    cfg: ProbeConfig

    def features(self, hook: str) -> np.ndarray:
        return self.split.features(hook)[self.fit_idx]


@dataclass(frozen=True)
class LayerFit:
    """A backend's result for one layer."""

    hook: str
    probe: LinearProbe
    controls: dict[str, LinearProbe]  # the same probe fitted on each control's labels
    seed_probes: list[LinearProbe]  # refits with seed + 1, ... (stochastic solvers only)
    train_accuracy: float
    seconds: float


class Backend(Protocol):
    def fit(self, train: TrainingSet, hooks: list[str]) -> Iterator[LayerFit]:
        """Fit every hook's probe (and control), yielding them in ``hooks`` order."""
        ...


def sklearn_layer(train: TrainingSet, hook: str) -> LayerFit:
    """Probe, extra solver seeds and controls of one layer with scikit-learn."""
    t0 = time.perf_counter()
    x, cfg = train.features(hook), train.cfg
    probe = fit_probe(x, train.y, cfg)
    seeds = []
    if cfg.stochastic:
        seeds = [fit_probe(x, train.y, dataclasses.replace(cfg, seed=cfg.seed + s)) for s in range(1, cfg.seeds)]
    controls = {name: fit_probe(x, labels, cfg) for name, labels in train.controls.items()}
    accuracy = float(np.mean(probe.predict(x) == train.y))
    return LayerFit(hook, probe, controls, seeds, accuracy, time.perf_counter() - t0)


@dataclass(frozen=True)
class SklearnBackend:
    """One layer per worker process (``jobs``), each limited to its share of BLAS threads."""

    jobs: int

    def fit(self, train: TrainingSet, hooks: list[str]) -> Iterator[LayerFit]:
        logger.info("scikit-learn %s: %d layer(s) at a time", train.cfg.solver, self.jobs)
        if self.jobs == 1:
            yield from (sklearn_layer(train, hook) for hook in hooks)
            return
        threads = max(1, available_cores() // self.jobs)
        with parallel_config(backend="loky", inner_max_num_threads=threads):
            yield from Parallel(n_jobs=self.jobs, return_as="generator")(
                delayed(sklearn_layer)(train, hook) for hook in hooks
            )


@dataclass(frozen=True)
class TorchBackend:
    """Groups of layers (probe and controls sharing every pass) in one batched L-BFGS solve."""

    device: str

    def fit(self, train: TrainingSet, hooks: list[str]) -> Iterator[LayerFit]:
        d_model = int(np.prod(read_meta(hook_path(train.split.act_dir, hooks[0])).shape))
        groups = torch_groups(hooks, len(train.y) * d_model * 4, self.device)
        logger.info(
            "torch backend on %s: layers in %d batched solve(s) of up to %d", self.device, len(groups), len(groups[0])
        )
        for group in groups:
            yield from self._group(train, group)

    def _group(self, train: TrainingSet, hooks: list[str]) -> list[LayerFit]:
        t0 = time.perf_counter()
        cfg = train.cfg
        classes, y_idx = np.unique(train.y, return_inverse=True)
        label_sets = [y_idx] + [np.searchsorted(classes, labels) for labels in train.controls.values()]
        raw = [train.features(hook) for hook in hooks]
        scalers = [feature_scaler(x, cfg.standardize) for x in raw]
        dev = torch.device(self.device)
        x_t = torch.from_numpy(
            np.stack([((x - mean) / scale).astype(np.float32) for x, (mean, scale) in zip(raw, scalers, strict=True)])
        ).to(dev)
        y_t = torch.from_numpy(np.stack(label_sets)).to(dev).expand(len(hooks), -1, -1)
        fit = fit_multinomial(x_t, y_t, len(classes), cfg.C, tol=cfg.tol, max_iter=cfg.max_iter)
        del x_t
        coef, intercept = fit.coef.double().cpu().numpy(), fit.intercept.double().cpu().numpy()
        n_iter, converged = fit.n_iter.cpu().numpy(), fit.converged.cpu().numpy()
        per_layer = (time.perf_counter() - t0) / len(hooks)
        results = []
        for g, hook in enumerate(hooks):
            mean, scale = scalers[g]
            probes = [
                LinearProbe(
                    coef[g, j], intercept[g, j], classes, mean, scale, int(n_iter[g, j]), int(not converged[g, j])
                )
                for j in range(len(label_sets))
            ]
            controls = dict(zip(train.controls, probes[1:], strict=True))
            accuracy = float(np.mean(probes[0].predict(raw[g]) == train.y))
            results.append(LayerFit(hook, probes[0], controls, [], accuracy, per_layer))
        return results


def torch_groups(hooks: list[str], bytes_per_layer: int, device: str) -> list[list[str]]:
    """Layers solved together: as many as fit a feature budget (GPU memory is the reason to batch)."""
    budget = TORCH_GROUP_BYTES_CUDA if device.startswith("cuda") else TORCH_GROUP_BYTES_CPU
    size = max(1, min(len(hooks), budget // max(1, bytes_per_layer)))
    return [hooks[i : i + size] for i in range(0, len(hooks), size)]


def sklearn_jobs(cfg: ProbeConfig, n_layers: int, fit_size: int, requested: int | None) -> int:
    """Worker processes for scikit-learn fits: one per core for the solvers in SINGLE_THREADED,
    when a fit (``fit_size`` = points x features) is big enough to repay a worker's start-up."""
    if requested is not None:
        return max(1, min(requested, n_layers))
    if cfg.solver not in SINGLE_THREADED or fit_size < PARALLEL_MIN_FIT_SIZE:
        return 1
    return max(1, min(available_cores(), n_layers))


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def backend_for(cfg: ProbeConfig, train: TrainingSet, hooks: list[str], device: str, jobs: int | None) -> Backend:
    if cfg.backend == "torch":
        return TorchBackend(device)
    d_model = int(np.prod(read_meta(hook_path(train.split.act_dir, hooks[0])).shape))
    return SklearnBackend(sklearn_jobs(cfg, len(hooks), len(train.y) * d_model, jobs))


@dataclass(frozen=True)
class Results:
    """The runner's output: long prediction tables (see ``predictions.py``) and fit facts."""

    val: pd.DataFrame
    heldout: pd.DataFrame | None  # prompts of training words (the word-type control), if any
    facts: dict[int, dict]


def probe_layers(
    train: Split,
    val: Split,
    hooks: list[str],
    cfg: ProbeConfig,
    out: Path,
    device: str = "cpu",
    jobs: int | None = None,
    heldout: Split | None = None,
) -> Results:
    """Fit (and save) a probe per residual-stream hook, plus baselines and controls.

    Validation points get the probe's, the baselines' and the position-shuffled control's
    predictions; held-out points (training words) the probe's and the word-type
    control's. Features are in memory only for the layers being fitted (one per worker,
    or one torch group).
    """
    rng = np.random.default_rng([cfg.seed, 0xC0])
    tr, va = train.points, val.points
    fit_idx = np.arange(len(tr))
    if cfg.train_balance == "position":
        fit_idx = position_balanced(cells(tr.position, tr.confound), tr.label, rng)
        logger.info("position-balanced training subset: %d of %d points", len(fit_idx), len(tr))
    fitted = tr.take(fit_idx)
    n_classes = int(fitted.label.max()) + 1
    per_val = baseline_predictions(fitted, va)
    controls: dict[str, np.ndarray] = {}
    if cfg.position_control:
        controls[POSITION_CONTROL] = shuffle_within(fitted.position, fitted.label, rng)
        per_val[label_column(POSITION_CONTROL)] = shuffle_within(
            cells(va.position, va.prefix_id, va.n_units), va.label, rng
        )
    per_heldout: dict[str, np.ndarray] = {}
    if heldout is not None:
        per_heldout = baseline_predictions(fitted, heldout.points)
        if cfg.word_control:
            types = word_type_labels(tr.word, n_classes, np.random.default_rng([cfg.seed, 0xD0]))
            controls[WORD_CONTROL] = np.array([types[w] for w in fitted.word])
            # a held-out unit can end in a word no fitted point ends in (schemes that probe a
            # sentence's, item's or line's last token): -1, left out of the control's score
            per_heldout[label_column(WORD_CONTROL)] = np.array([types.get(w, -1) for w in heldout.points.word])
    training = TrainingSet(train, fit_idx, fitted.label, controls, cfg)
    backend = backend_for(cfg, training, hooks, device, jobs)
    if train.ordinal:
        for name, key in (("position_mean", "position"), ("confound_mean", "confound")):
            per_val[name] = mean_lookup(getattr(fitted, key), fitted.count, getattr(va, key))
    main = va.main(int(tr.n_units[0]))  # the training prefix and count: where seed spreads are measured
    val_layers, heldout_layers, facts = [], [], {}
    for fit in tqdm(backend.fit(training, hooks), total=len(hooks), desc="probes", unit="layer"):
        layer = layer_of(fit.hook)
        fit.probe.save(probe_path(fit.hook, out))
        x_val = val.features(fit.hook)
        cols = {PROBE: fit.probe.predict(x_val)}
        info = {
            "train_accuracy": round(fit.train_accuracy, 4),
            "n_iter": fit.probe.n_iter,
            "convergence_warnings": fit.probe.convergence_warnings
            + sum(p.convergence_warnings for p in (*fit.seed_probes, *fit.controls.values())),
        }
        if fit.seed_probes:
            accs = [float(np.mean(p.predict(x_val[main]) == va.label[main])) for p in (fit.probe, *fit.seed_probes)]
            info["seed_accuracies"] = [round(a, 4) for a in accs]
            info["seed_accuracy_std"] = round(float(np.std(accs)), 4)
        if POSITION_CONTROL in fit.controls:
            cols[POSITION_CONTROL] = fit.controls[POSITION_CONTROL].predict(x_val)
        if train.ordinal:
            ridge = fit_ridge(training.features(fit.hook), fitted.count, cfg.ridge_alpha, cfg.standardize)
            ridge.save(ridge_path(fit.hook, out))
            cols[REGRESSION] = ridge.predict(x_val)
        val_layers.append((layer, fit.hook, cols))
        if heldout is not None:
            x_held = heldout.features(fit.hook)
            held = {PROBE: fit.probe.predict(x_held)}
            if WORD_CONTROL in fit.controls:
                held[WORD_CONTROL] = fit.controls[WORD_CONTROL].predict(x_held)
            heldout_layers.append((layer, fit.hook, held))
        facts[layer] = info
        logger.info(
            "layer %d (%s): val accuracy %.3f, fits %.1fs, %d iterations, %d convergence warnings",
            layer,
            fit.hook,
            float(np.mean(cols[PROBE][main] == va.label[main])),
            fit.seconds,
            info["n_iter"],
            info["convergence_warnings"],
        )
    held_table = None if heldout is None else long_table(point_frame(heldout.points, per_heldout), heldout_layers)
    return Results(long_table(point_frame(va, per_val), val_layers), held_table, facts)
