"""Probes: the portable probe equals a direct scikit-learn fit; baselines are what they claim."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler

from emergent_pos.config import ProbeConfig
from emergent_pos.metrics import accuracy, bootstrap_ci, position_balanced
from emergent_pos.probes import LinearProbe, LookupBaseline, Points, Split, fit_probe, probe_layers, shuffle_within
from emergent_pos.store import LayerMeta, LayerWriter, layer_path


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


def _kkt_max_grad(x: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: np.ndarray, C: float) -> float:
    """Max-abs gradient of scikit-learn's scaled objective at (coef, intercept), in float64 numpy."""
    n = len(y)
    logits = x @ coef.T + intercept
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    resid = (p - np.eye(coef.shape[0])[y]) / n
    return float(max(np.abs(resid.T @ x + coef / (C * n)).max(), np.abs(resid.sum(axis=0)).max()))


def _ill_conditioned(seed: int, n: int = 3000, d: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Correlated features spanning four orders of magnitude, offset from zero, as residual streams are."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, n)
    base = rng.normal(size=(5, d))[y] * 0.4 + rng.normal(size=(n, d))
    mix = rng.normal(size=(d, d)) * np.logspace(0, -2, d)[:, None]
    return base @ mix.T * 3 + 5, y


def test_batched_torch_solve_equals_separate_solves_at_the_optimum() -> None:
    import torch

    from emergent_pos.torch_probe import fit_multinomial

    xs, ys = zip(*(_ill_conditioned(s) for s in (0, 1)), strict=True)
    controls = [np.random.default_rng(9).permutation(y) for y in ys]
    x = torch.tensor(np.stack(xs), dtype=torch.float32)
    y = torch.tensor(np.stack([np.stack([ys[g], controls[g]]) for g in range(2)]))
    batched = fit_multinomial(x, y, 5, C=0.5)
    assert batched.converged.all()
    for g in range(2):
        for m in range(2):
            alone = fit_multinomial(x[g : g + 1], y[g : g + 1, m : m + 1], 5, C=0.5)
            # its own line search and stopping test: batch-mates change only the rounding of products
            assert abs(int(alone.n_iter) - int(batched.n_iter[g, m])) <= 2
            np.testing.assert_allclose(batched.coef[g, m], alone.coef[0, 0], rtol=0, atol=1e-3)
            coef, intercept = batched.coef[g, m].double().numpy(), batched.intercept[g, m].double().numpy()
            labels = y[g, m].numpy()
            # sklearn's stopping rule, checked independently in float64 (float32 rounding allowed for)
            assert _kkt_max_grad(xs[g], labels, coef, intercept, 0.5) < 2e-4


def test_torch_backend_is_closer_to_the_optimum_than_sklearn_when_ill_conditioned() -> None:
    x, y = _ill_conditioned(2)
    cfg = ProbeConfig(C=0.5, standardize=False)
    th = fit_probe(x, y, dataclasses.replace(cfg, backend="torch"))
    sk = fit_probe(x, y, cfg)
    # the reference: scikit-learn itself, run to a far tighter tolerance
    ref = LogisticRegression(C=0.5, tol=1e-10, max_iter=100_000).fit(x, y)

    def centred(c: np.ndarray) -> np.ndarray:  # softmax logits are defined up to a shared shift
        return c - c.mean(axis=0)

    err = {k: np.linalg.norm(centred(p.coef) - centred(ref.coef_)) for k, p in (("torch", th), ("sklearn", sk))}
    assert err["torch"] < 0.02 * np.linalg.norm(centred(ref.coef_))
    assert err["torch"] < err["sklearn"]
    assert th.n_iter < sk.n_iter / 5  # preconditioning: L-BFGS sees a well-conditioned problem


def _store(root: Path, n_prompts: int, n_layers: int, d: int, seed: int) -> Split:
    """A split of synthetic prompts with real layer files; the word index is in the features."""
    rng = np.random.default_rng(seed)
    rows = []
    for pid in range(n_prompts):
        rows += [{"prompt_id": pid, "word_index": -1, "start": False, "end": False}] * 4  # a prefix
        for w in range(7):
            k = int(rng.integers(1, 4))
            rows += [{"prompt_id": pid, "word_index": w, "start": t == 0, "end": t == k - 1} for t in range(k)]
    table = pd.DataFrame(rows)
    table["position"] = table.groupby("prompt_id").cumcount()
    table["prefix_id"] = 0
    table = table.rename(columns={"start": "is_word_start", "end": "is_word_end"})
    centers = np.random.default_rng(123).normal(size=(8, d))  # the same in every split
    root.mkdir()
    for layer in range(n_layers):
        x = rng.normal(size=(len(table), d)) + centers[table.word_index.to_numpy() + 1] * 0.4 * layer
        meta = LayerMeta("synthetic", f"h{layer}", layer, d, "float32", len(table), "sha", "raw", "float32")
        writer = LayerWriter(layer_path(root, layer), meta)
        writer.write(0, x.astype(np.float32))
        writer.commit()
    return Split(Points.select(table, "last"), root, "sha", len(table))


def test_probe_layers_parallel_and_torch_agree_with_sequential_sklearn(tmp_path: Path) -> None:
    train = _store(tmp_path / "train", 150, 3, 12, seed=0)
    val = _store(tmp_path / "val", 80, 3, 12, seed=1)
    cfg = ProbeConfig(max_iter=500)
    runs = {}
    for name, c, jobs in (("seq", cfg, 1), ("par", cfg, 2), ("torch", dataclasses.replace(cfg, backend="torch"), None)):
        out = tmp_path / name
        out.mkdir()
        runs[name] = (probe_layers(train, val, 3, c, out, jobs=jobs), out)
    (seq, seq_info), _ = runs["seq"]
    (par, par_info), par_out = runs["par"]
    # worker processes change nothing but BLAS threads (so, at most, the last digits of a fit)
    assert list(seq.columns) == list(par.columns)
    for col in seq.columns:
        assert np.mean(seq[col].to_numpy() == par[col].to_numpy()) >= 0.99, col
    assert seq_info.keys() == par_info.keys()
    assert LinearProbe.load(par_out / "layer_02.npz").coef.shape == (7, 12)
    (th, th_info), _ = runs["torch"]
    y = seq.word_index.to_numpy()
    for layer in range(3):
        for col in (f"layer_{layer:02d}", f"control_{layer:02d}"):
            truth = y if col.startswith("layer") else seq.control_label.to_numpy()
            assert abs(accuracy(truth, th[col].to_numpy()) - accuracy(truth, seq[col].to_numpy())) <= 0.005
        assert th_info[layer]["convergence_warnings"] == 0
    assert accuracy(y, seq.layer_02.to_numpy()) > 0.8 > accuracy(y, seq.layer_00.to_numpy())
