"""The torch solver: scikit-learn's optimum, faster, batched without changing a problem's answer."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from emergent_pos.probes.config import ProbeConfig
from emergent_pos.probes.linear import fit_probe
from emergent_pos.probes.torch_solver import fit_multinomial


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
