"""Probes: the portable probe equals a direct scikit-learn fit; baselines are what they claim."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler

from emergent_pos.config import ProbeConfig
from emergent_pos.metrics import bootstrap_ci, position_balanced
from emergent_pos.probes import LinearProbe, LookupBaseline, fit_probe, shuffle_within


def _data(seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 7, 1500)
    centers = rng.normal(size=(7, 24))
    x = centers[y] * 0.6 + rng.normal(size=(1500, 24)) + 3.0
    return x[:1000], y[:1000], x[1000:], y[1000:]


def test_probe_matches_direct_sklearn_fit(tmp_path: Path) -> None:
    xtr, ytr, xva, yva = _data()
    probe = fit_probe(xtr, ytr, ProbeConfig())
    scaler = StandardScaler().fit(xtr)
    direct = LogisticRegression(C=1.0, max_iter=1000, random_state=0).fit(scaler.transform(xtr), ytr)
    expected = direct.predict(scaler.transform(xva))
    assert np.array_equal(probe.predict(xva), expected)
    assert 0.5 < np.mean(expected == yva) < 1.0
    probe.save(tmp_path / "p.npz")
    again = LinearProbe.load(tmp_path / "p.npz")
    assert np.array_equal(again.predict(xva), expected)
    assert probe.convergence_warnings == 0


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_seed_setting_ovr_saga_unscaled() -> None:
    xtr, ytr, xva, _ = _data(1)
    cfg = ProbeConfig(solver="saga", multi_class="ovr", standardize=False, max_iter=100, seed=42)
    probe = fit_probe(xtr, ytr, cfg)
    direct = OneVsRestClassifier(LogisticRegression(solver="saga", C=1.0, max_iter=100, random_state=42))
    direct.fit(xtr, ytr)
    assert np.array_equal(probe.predict(xva), direct.predict(xva))
    assert probe.convergence_warnings > 0  # unscaled saga at 100 iterations does not converge: counted


def test_position_baseline_is_the_majority_per_position() -> None:
    pos = np.array([20, 20, 20, 21, 21, 22])
    y = np.array([0, 0, 1, 1, 2, 2])
    base = LookupBaseline.fit(pos[:, None], y)
    assert base.predict(np.array([20, 21, 22, 99])[:, None]).tolist() == [0, 1, 2, 0]  # ties: lowest index


def test_position_balanced_subset_is_balanced() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 4, size=(3000, 7))
    position = (20 + np.cumsum(lengths, axis=1) - 1).ravel()  # word-end positions, as in the prompts
    y = np.tile(np.arange(7), 3000)
    idx = position_balanced(position, y, np.random.default_rng(1))
    assert len(idx) > 1000 and np.all(np.diff(idx) > 0)
    for p in np.unique(position[idx]):
        counts = np.bincount(y[idx][position[idx] == p])
        assert len(set(counts[counts > 0])) == 1  # every index present at p equally often
        assert (counts > 0).sum() == len(np.unique(y[position == p]))  # and none dropped
    # position alone is at chance on the balanced subset
    base = LookupBaseline.fit(position[:, None], y).predict(position[idx][:, None])
    per_position_chance = np.mean([1 / len(np.unique(y[position == p])) for p in position[idx]])
    assert abs(np.mean(base == y[idx]) - per_position_chance) < 0.03


def test_control_task_is_at_chance_without_signal() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    position = rng.integers(20, 24, n)
    y = rng.integers(0, 7, n)
    x = rng.normal(size=(n, 16))  # a "model" whose features carry nothing
    control = shuffle_within(position, y, rng)
    assert all(sorted(control[position == p]) == sorted(y[position == p]) for p in range(20, 24))
    probe = fit_probe(x[:3000], control[:3000], ProbeConfig())
    acc = np.mean(probe.predict(x[3000:]) == control[3000:])
    assert abs(acc - 1 / 7) < 0.04


def test_bootstrap_interval_shrinks_with_more_prompts() -> None:
    rng = np.random.default_rng(0)
    widths = []
    for n_prompts in (100, 1600):
        pid = np.repeat(np.arange(n_prompts), 7)
        correct = rng.random(len(pid)) < 0.7
        lo, hi = bootstrap_ci(correct, pid, seed=0)
        assert lo < correct.mean() < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 3  # ~1/sqrt(16) = 1/4


def test_torch_backend_matches_sklearn() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 7, 6000)
    x = rng.normal(size=(7, 64))[y] * 0.3 + rng.normal(size=(6000, 64))
    xtr, ytr, xva, yva = x[:4000], y[:4000], x[4000:], y[4000:]
    sk = fit_probe(xtr, ytr, ProbeConfig(C=0.5))
    th = fit_probe(xtr, ytr, ProbeConfig(C=0.5, backend="torch"))
    acc_sk, acc_th = np.mean(sk.predict(xva) == yva), np.mean(th.predict(xva) == yva)
    assert abs(acc_sk - acc_th) <= 0.005
    # same optimum up to the softmax's free shift of all logits
    centred = [p.coef - p.coef.mean(axis=0) for p in (sk, th)]
    assert np.linalg.norm(centred[0] - centred[1]) / np.linalg.norm(centred[0]) < 1e-2
    assert th.convergence_warnings == 0
