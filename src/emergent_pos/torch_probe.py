"""Multinomial L2-regularised logistic regression by full-batch L-BFGS in torch.

The same objective as scikit-learn's ``LogisticRegression(C=C)`` (lbfgs, multinomial):
``C * sum_i CE(W x_i + b, y_i) + ||W||^2 / 2`` with an unpenalised intercept, so on the
same data both find the same minimum; this one runs on a GPU when there is one.
Shaped like a scikit-learn estimator so the two backends are interchangeable.
"""

from __future__ import annotations

import numpy as np
import torch


class TorchLogisticRegression:
    """``fit`` returns self; learned state ends in ``_`` as in scikit-learn."""

    def __init__(
        self,
        C: float = 1.0,
        max_iter: int = 1000,
        tol: float = 1e-5,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.C = C
        self.dtype = dtype
        self.max_iter = max_iter
        self.tol = tol
        self.device = device

    def fit(self, x: np.ndarray, y: np.ndarray) -> TorchLogisticRegression:
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        dev = torch.device(self.device)
        xt = torch.as_tensor(x, dtype=self.dtype, device=dev)
        yt = torch.as_tensor(y_idx, dtype=torch.long, device=dev)
        n_classes, n = len(self.classes_), len(y_idx)
        w = torch.zeros(xt.shape[1], n_classes, dtype=self.dtype, device=dev, requires_grad=True)
        b = torch.zeros(n_classes, dtype=self.dtype, device=dev, requires_grad=True)
        opt = torch.optim.LBFGS(
            [w, b],
            lr=1,
            max_iter=self.max_iter,
            tolerance_grad=self.tol,
            tolerance_change=1e-12,
            history_size=20,
            line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            opt.zero_grad()
            # scaled by 1/(C n) so the tolerances do not depend on the data size
            loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + (w * w).sum() / (2 * self.C * n)
            loss.backward()
            return loss

        opt.step(closure)
        self.n_iter_ = np.array([opt.state[opt._params[0]]["n_iter"]])
        self.coef_ = w.detach().T.cpu().numpy()  # (n_classes, d) like scikit-learn
        self.intercept_ = b.detach().cpu().numpy()
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return x @ self.coef_.T + self.intercept_

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(x), axis=1)]
