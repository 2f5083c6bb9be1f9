"""Params of the ``probes`` stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from emergent_pos.config import MAX_SEED, ParamError, positive


@dataclass(frozen=True)
class ProbeConfig:
    token: Literal["last", "first", "all"] = "last"
    """Which tokens of each unit the probe reads (as stored: ``activations.tokens``)."""
    backend: Literal["sklearn", "torch"] = "sklearn"
    """``torch``: the same multinomial L2 logistic regression by full-batch L-BFGS (GPU when present)."""
    solver: Literal["lbfgs", "saga", "sag", "newton-cg", "newton-cholesky", "liblinear"] = "lbfgs"
    C: float = 1.0
    max_iter: int = 1000
    tol: float = 1e-4
    """Stop when the max-abs gradient is below this (scikit-learn's lbfgs criterion and default)."""
    multi_class: Literal["multinomial", "ovr"] = "multinomial"
    standardize: bool = True
    """Standardise features with the training mean and std (stored with the probe)."""
    seed: int = 0
    seeds: int = 3
    """Fits per layer with seeds seed, seed+1, ... when the solver is stochastic (sag, saga)."""
    position_control: bool = True
    """Also fit the position-shuffled control per layer: labels permuted among the points that
    share an absolute position (can the probe's capacity recover the index from position?)."""
    word_control: bool = True
    """Also fit Hewitt & Liang's word-type control per layer: each word type gets one random
    index (can the probe memorise word identities?), scored on held-out prompts of training words."""
    train_balance: Literal["none", "position"] = "none"
    """``position``: train on a subset balanced on absolute position and the scheme's nearer confound."""
    char_bin: int = 5
    """An ordinal scheme's count (``char_in_line``'s characters) in classes of this many for the
    classifier; the ridge regression beside it reads the count itself."""
    ridge_alpha: float = 1.0
    """L2 penalty of the ridge regression an ordinal scheme gets (on standardised features)."""

    def validate(self, section: str) -> None:
        if not self.C > 0:
            raise ParamError(f"{section}.C", self.C, "must be > 0")
        if not self.tol > 0:
            raise ParamError(f"{section}.tol", self.tol, "must be > 0")
        positive(section, "max_iter", self.max_iter)
        positive(section, "seeds", self.seeds)
        positive(section, "char_bin", self.char_bin)
        if not self.ridge_alpha >= 0:
            raise ParamError(f"{section}.ridge_alpha", self.ridge_alpha, "must be >= 0")
        if not 0 <= self.seed <= MAX_SEED - self.seeds:
            raise ParamError(
                f"{section}.seed", self.seed, f"must be in 0..{MAX_SEED - self.seeds} (seed + seeds <= 2**32-1)"
            )
        if self.backend == "torch" and self.multi_class != "multinomial":
            raise ParamError(f"{section}.multi_class", self.multi_class, "the torch backend is multinomial only")
        if self.solver == "liblinear" and self.multi_class == "multinomial":
            raise ParamError(f"{section}.solver", self.solver, "liblinear needs probe.multi_class: ovr")

    @property
    def stochastic(self) -> bool:
        """The fit depends on ``seed`` (scikit-learn's sag and saga): extra seeds measure the spread."""
        return self.backend == "sklearn" and self.solver in ("sag", "saga")
