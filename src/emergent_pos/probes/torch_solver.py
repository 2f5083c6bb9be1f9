"""Multinomial L2-regularised logistic regression for many probes at once, in torch.

Each problem is scikit-learn's ``LogisticRegression(C=C)`` (lbfgs, multinomial) objective,
scaled as scikit-learn scales it, so its ``tol`` means the same thing here:

    f(W, b) = mean_i CE(x_i W + b, y_i) + ||W||^2 / (2 C n)     (intercept unpenalised)

The minimiser is unique, so any solver that converges finds the same probe. This one is
faster than scikit-learn's because:

* it preconditions: features are centred (the intercept absorbs the shift), rotated into
  the eigenbasis of their covariance and scaled by ``(a * lambda_j + 1 / (C n))^-1/2``,
  the inverse square root of the Hessian's diagonal there at the start (``a`` is the
  softmax curvature at uniform predictions). The penalty is carried over exactly, so the
  minimiser mapped back is the original one. On correlated, anisotropic features (residual
  streams) L-BFGS then needs a fraction of the iterations, and its small-gradient stop is
  near the optimum, where scikit-learn's can stop well short of it;
* it runs in float32 (scikit-learn's lbfgs works in float64), and a line search costs no
  extra pass over the data (logits are affine along the search direction);
* problems that share features (a layer's probe and its controls) share every pass
  over the data: their weights are rows of one matrix;
* groups (layers) are batched into one solve: batched products fill a GPU, and use
  every core of a CPU where one thin product cannot.

Every problem keeps its own L-BFGS state, line search and stopping test (batched as
vectors of per-problem scalars), so a problem's result does not depend on what it is
batched with, beyond the rounding of batched products.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Fit:
    """Solutions in the original feature space, one per (group, label set)."""

    coef: torch.Tensor  # (B, M, K, d), rows per class as in scikit-learn
    intercept: torch.Tensor  # (B, M, K)
    n_iter: torch.Tensor  # (B, M)
    converged: torch.Tensor  # (B, M) bool: max |gradient| <= tol


def _dot(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Per-problem inner product (B, M) of parameter-shaped tensors (B, M, K, D), in float64."""
    return (a * c).sum(dim=(2, 3), dtype=torch.float64)


def _times(s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``v`` scaled by one scalar per problem (``s`` is (B, M))."""
    return v * s.to(v.dtype)[..., None, None]


class _Data:
    """A group's preconditioned features in both layouts, its labels and penalty weights.

    The intercept is the weight of a constant feature whose penalty is zero, so a
    problem's parameters are one (K, D = d + 1) block. Products with the features are
    the whole cost; CPU BLAS is slow when the big operand is on the left of a product
    with few columns, hence ``zt`` (B, D, n) for logits and ``z`` (B, n, D) for gradients.
    """

    def __init__(self, z: torch.Tensor, y_onehot: torch.Tensor, pen: torch.Tensor) -> None:
        self.z, self.zt = z, z.transpose(1, 2).contiguous()
        self.y = y_onehot  # (B, M, K, n)
        self.pen = pen[:, None, None, :]  # (B, 1, 1, D)
        self.n = z.shape[1]

    def logits(self, w: torch.Tensor) -> torch.Tensor:
        bsz, m, k, dd = w.shape
        return torch.bmm(w.reshape(bsz, m * k, dd), self.zt).view(bsz, m, k, self.n)

    def loss(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy (B, M), summed in float64 (near the optimum a step gains less
        than float32 resolves), and the probabilities."""
        logp = torch.log_softmax(logits, dim=2)
        return -(logp * self.y).sum(dim=(2, 3), dtype=torch.float64) / self.n, logp.exp()

    def gradient(self, prob: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        bsz, m, k, dd = w.shape
        resid = (prob - self.y).reshape(bsz, m * k, self.n)
        return torch.bmm(resid, self.z).view(w.shape) / self.n + self.pen * w


def fit_multinomial(
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    C: float,
    tol: float = 1e-4,
    max_iter: int = 1000,
    history: int = 10,
) -> Fit:
    """Solve ``B x M`` problems: group ``g`` has features ``x[g]`` (n, d) and M label sets ``y[g]``.

    ``y`` (B, M, n) holds class indices 0..n_classes-1 and every label set must use every
    class (an absent class has no finite optimum). Runs on ``x``'s device in ``x``'s
    dtype. Stops a problem when the max-abs gradient of ``f`` in the original
    coordinates, intercept included, is <= ``tol``: scikit-learn's lbfgs criterion.
    """
    if x.dim() != 3 or y.dim() != 3 or y.shape[0] != x.shape[0] or y.shape[2] != x.shape[1]:
        raise ValueError(f"x must be (B, n, d) and y (B, M, n); got {tuple(x.shape)} and {tuple(y.shape)}")
    bsz, n, d = x.shape
    m, k = y.shape[1], n_classes
    y_onehot = torch.nn.functional.one_hot(y.long(), k).permute(0, 1, 3, 2).to(x.dtype)  # (B, M, K, n)
    if bool((y_onehot.sum(dim=3) == 0).any()):
        raise ValueError("every label set must contain every class")
    dtype, dev = x.dtype, x.device
    r = 1.0 / (C * n)
    curvature = (1.0 / k) * (1.0 - 1.0 / k)  # softmax Hessian diagonal at uniform predictions

    # preconditioned coordinates: W = basis @ U, basis column j = g_j v_j; the constant
    # feature 1/sqrt(curvature) carries the intercept at the same scale
    mean = x.mean(dim=1, keepdim=True)
    xc = x - mean
    lam, vec = torch.linalg.eigh(torch.bmm(xc.transpose(1, 2), xc).double() / n)
    gain = (curvature * lam.clamp(min=0) + r).rsqrt()  # (B, d)
    basis = (vec * gain[:, None, :]).to(dtype)
    grad_back = (vec / gain[:, None, :]).to(dtype)  # grad_W = grad_back @ grad_U
    const = curvature**-0.5
    z = torch.cat([torch.bmm(xc, basis), torch.full((bsz, n, 1), const, dtype=dtype, device=dev)], dim=2)
    pen = torch.cat([gain * gain * r, torch.zeros(bsz, 1, dtype=gain.dtype, device=dev)], dim=1).to(dtype)
    data = _Data(z, y_onehot, pen)
    del xc, vec, z

    def max_grad(g: torch.Tensor) -> torch.Tensor:
        """Max-abs gradient with respect to the original, uncentred (W, b)."""
        gb = g[..., d] / const  # the intercept is const times its coordinate
        gw = torch.bmm(g[..., :d].reshape(bsz, m * k, d), grad_back.transpose(1, 2)).view(bsz, m, k, d)
        gw = gw + gb[..., None] * mean[:, None]  # undo the centring: b_centred = b + mean . w
        return torch.maximum(gw.abs().amax(dim=(2, 3)), gb.abs().amax(dim=2))

    def penalty(w: torch.Tensor) -> torch.Tensor:
        return 0.5 * (data.pen * w * w).sum(dim=(2, 3), dtype=torch.float64)

    w = torch.zeros(bsz, m, k, d + 1, dtype=dtype, device=dev)
    logits = data.logits(w)
    f, prob = data.loss(logits)
    f = f + penalty(w)
    g = data.gradient(prob, w)
    done = max_grad(g) <= tol
    n_iter = torch.zeros(bsz, m, dtype=torch.long, device=dev)
    gamma = torch.ones(bsz, m, dtype=torch.float64, device=dev)  # initial inverse-Hessian scale
    hist: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for it in range(max_iter):
        if bool(done.all()):
            break
        # L-BFGS two-loop recursion, every scalar per problem
        q = -g
        alphas = []
        for s, yv, rho in reversed(hist):
            a = rho * _dot(s, q)
            alphas.append(a)
            q = q - _times(a, yv)
        q = _times(gamma, q)
        for (s, yv, rho), a in zip(hist, reversed(alphas), strict=True):
            q = q + _times(a - rho * _dot(yv, q), s)
        q = _times((~done).double(), q)  # converged problems stay put
        slope = _dot(q, g)
        lost = (slope >= 0) & ~done
        if bool(lost.any()):  # no descent (rounding): those problems forget their history
            hist = [(s, yv, torch.where(lost, torch.zeros_like(rho), rho)) for s, yv, rho in hist]
            gamma = torch.where(lost, torch.ones_like(gamma), gamma)
            q = torch.where(lost[..., None, None], -g, q)
            slope = _dot(q, g)
        # Line search on the exact objective. Logits are affine along the direction, so
        # trial steps cost no pass over the features. A step is taken where the slope at
        # the trial point is still <= 0 (by convexity f decreased: a test that needs no
        # last digits of f) or Armijo holds; elsewhere try the secant estimate of the minimum.
        dlogits = data.logits(q)
        pen_wq = (data.pen * w * q).sum(dim=(2, 3), dtype=torch.float64)
        pen_qq = (data.pen * q * q).sum(dim=(2, 3), dtype=torch.float64)
        pen_w = penalty(w)
        step = torch.ones(bsz, m, dtype=torch.float64, device=dev)
        taken = torch.zeros_like(step)
        pending = ~done
        for _ in range(40):
            t_data, t_prob = data.loss(logits + _times(step, dlogits))
            t_f = t_data + pen_w + step * pen_wq + 0.5 * step * step * pen_qq
            t_slope = ((t_prob - data.y) * dlogits).sum(dim=(2, 3), dtype=torch.float64) / n + pen_wq + step * pen_qq
            ok = pending & ((t_slope <= 0) | (t_f <= f + 1e-4 * step * slope))
            taken = torch.where(ok, step, taken)
            pending = pending & ~ok
            if not bool(pending.any()):
                break
            curved = t_slope > slope  # always, for a convex f, unless rounding flattened it
            secant = step * slope / torch.where(curved, slope - t_slope, -torch.ones_like(slope))
            step = torch.where(pending, torch.minimum(torch.maximum(secant, 0.1 * step), 0.9 * step), step)
        moved = ~done & ~pending  # a problem whose search failed stops where it is
        s_vec = _times(taken, q)
        w = w + s_vec
        if it % 25 == 24:  # re-anchor the incrementally updated logits on an exact product
            logits = data.logits(w)
        else:
            logits = logits + _times(taken, dlogits)
        f, prob = data.loss(logits)
        f = f + penalty(w)
        new_g = data.gradient(prob, w)
        y_vec = new_g - g
        g = new_g
        n_iter += moved.long()
        sy, yy = _dot(s_vec, y_vec), _dot(y_vec, y_vec)
        curv_ok = moved & (sy > 1e-10 * (yy * _dot(s_vec, s_vec)).sqrt())
        safe_sy = torch.where(curv_ok, sy, torch.ones_like(sy))
        hist.append((s_vec, y_vec, torch.where(curv_ok, 1.0 / safe_sy, torch.zeros_like(sy))))  # rho 0: inert
        gamma = torch.where(curv_ok, safe_sy / yy.clamp(min=1e-300), gamma)
        if len(hist) > history:
            hist.pop(0)
        done = done | pending | (max_grad(g) <= tol)
    coef = torch.bmm(w[..., :d].reshape(bsz, m * k, d), basis.transpose(1, 2)).view(bsz, m, k, d)
    intercept = w[..., d] * const - torch.einsum("bd,bmkd->bmk", mean[:, 0], coef)
    return Fit(coef, intercept, n_iter, max_grad(g) <= tol)


class TorchLogisticRegression:
    """One problem through ``fit_multinomial``, shaped like a scikit-learn estimator."""

    def __init__(self, C: float = 1.0, max_iter: int = 1000, tol: float = 1e-4, device: str = "cpu") -> None:
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.device = device

    def fit(self, x: np.ndarray, y: np.ndarray) -> TorchLogisticRegression:
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        dev = torch.device(self.device)
        xt = torch.as_tensor(np.asarray(x, dtype=np.float32), device=dev)[None]
        yt = torch.as_tensor(y_idx, dtype=torch.long, device=dev)[None, None]
        fit = fit_multinomial(xt, yt, len(self.classes_), self.C, self.tol, self.max_iter)
        self.coef_ = fit.coef[0, 0].double().cpu().numpy()
        self.intercept_ = fit.intercept[0, 0].double().cpu().numpy()
        self.n_iter_ = fit.n_iter[0].cpu().numpy()
        self.converged_ = bool(fit.converged[0, 0])
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return x @ self.coef_.T + self.intercept_

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(x), axis=1)]
