"""Is the probe's direction used? Its subspace removed, resampled or pushed along, against random ones.

At the residual stream of a probe layer: project the probe's subspace out
(``x - Q Qᵀ x``), or resample it (that component taken from another prompt at the same
position), against random subspaces of the same rank; and steer along the difference of
two class directions at one word, against random directions of the same length.
Measured by the model's own next-token loss (``measure.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from emergent_pos.analysis.forward import PromptSet, Readout, donors
from emergent_pos.analysis.intervals import sds_above, spread
from emergent_pos.analysis.measure import LOSSES, Outcome, Task, measure, paired_delta
from emergent_pos.model.hooks import capture, residual_hooks
from emergent_pos.probes.linear import LinearProbe

logger = logging.getLogger(__name__)
HOWS = ("projection", "resample")


def probe_basis(probe: LinearProbe) -> np.ndarray:
    """``[d, r]`` orthonormal basis of the directions that change the probe's prediction.

    Softmax ignores a shift shared by every class, so the subspace is spanned by the
    class weight vectors (in activation space, ``coef / scale``) minus their mean:
    rank ``K - 1`` for ``K`` classes.
    """
    w = probe.coef / probe.scale
    w = w - w.mean(0)
    _, s, vt = np.linalg.svd(w, full_matrices=False)
    rank = int((s > s.max() * 1e-6).sum()) if len(s) and s.max() > 0 else 0
    return vt[:rank].T


def random_basis(d: int, rank: int, rng: np.random.Generator) -> np.ndarray:
    """``[d, rank]`` orthonormal basis of a uniformly random subspace."""
    q, _ = np.linalg.qr(rng.standard_normal((d, rank)))
    return q[:, :rank]


def project_out(q: torch.Tensor) -> Callable[[torch.Tensor, Any], torch.Tensor]:
    """Hook: remove the subspace spanned by ``q``'s orthonormal columns."""

    def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
        qx = q.to(x.device)  # blocks may sit on other devices than q (a split model)
        return x - (x @ qx) @ qx.T

    return hook


def resample(q: torch.Tensor, donor: np.ndarray) -> Callable[[torch.Tensor, Any], torch.Tensor]:
    """Hook: each prompt's component in ``q``'s subspace replaced by its donor's (same positions)."""

    def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
        qx = q.to(x.device)
        return x - (x @ qx) @ qx.T + (x[donor] @ qx) @ qx.T

    return hook


def add_at(vec: torch.Tensor, rows: np.ndarray, positions: np.ndarray) -> Callable[[torch.Tensor, Any], torch.Tensor]:
    """Hook: add ``vec`` to the residual stream at ``(rows[i], positions[i])``."""

    def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
        x = x.clone()
        x[rows, positions] += vec.to(x.device)
        return x

    return hook


def subspace_tests(
    bridge: Any,
    task: Task,
    text_task: Task | None,
    layer: int,
    probe: LinearProbe,
    n_random: int,
    rng: np.random.Generator,
    clean: Outcome,
    clean_text: Outcome | None,
    readout: Readout,
) -> list[dict]:
    """Projection and resampling of the probe subspace at ``layer`` against ``n_random`` random ones:
    one row per (intervention, subspace) with each loss's paired change and interval."""
    hook = residual_hooks(bridge.cfg.n_layers)[layer]
    basis = probe_basis(probe)
    rank, d = basis.shape[1], basis.shape[0]
    bases = {"probe": basis, **{f"random_{i}": random_basis(d, rank, rng) for i in range(n_random)}}
    rows = []
    for how in HOWS:
        for name, q in bases.items():
            qt = torch.as_tensor(q, dtype=torch.float32, device=bridge.cfg.device)
            draw = np.random.default_rng([n_random, layer])

            def hooks(idx: np.ndarray, lengths: np.ndarray, qt=qt, how=how, draw=draw) -> list:
                fn = project_out(qt) if how == "projection" else resample(qt, donors(lengths, draw))
                return [(hook, fn)]

            out = measure(bridge, task, hooks, readout, desc=f"layer {layer} {how} {name}")
            deltas = paired_delta(clean.loss, clean.loss_n, out.loss, out.loss_n)
            row = {
                "layer": layer,
                "intervention": how,
                "subspace": name,
                "rank": rank,
                "probe_accuracy": float(out.accuracy()[sorted(task.probes).index(layer)]),
            }
            for j, loss in enumerate(LOSSES):
                row[loss] = float(deltas["delta"][j])
                row[f"{loss}_lo"], row[f"{loss}_hi"] = float(deltas["lo"][j]), float(deltas["hi"][j])
            if text_task is not None and clean_text is not None:
                t = measure(bridge, text_task, hooks, readout)
                row["text"] = float(t.mean_loss()[0] - clean_text.mean_loss()[0])
            rows.append(row)
    return rows


def summarize_subspace(rows: list[dict], layer: int, loss: str) -> dict:
    """The probe subspace's effect on one loss beside the random subspaces' mean, spread and range."""
    out = {}
    for how in HOWS:
        mine = [r for r in rows if r["layer"] == layer and r["intervention"] == how]
        probe = next(r for r in mine if r["subspace"] == "probe")
        rand = np.array([r[loss] for r in mine if r["subspace"] != "probe"])
        above = sds_above(probe[loss], rand)
        out[how] = {
            "probe": probe[loss],
            "probe_ci": [probe[f"{loss}_lo"], probe[f"{loss}_hi"]],
            "random": spread(rand),
            # a ratio means something only when random subspaces raise the loss at all
            "ratio": probe[loss] / float(rand.mean()) if rand.mean() > 0 else None,
            "random_sds_above": above["value"],
            "random_sds_above_ci": above["ci"],
            "probe_accuracy_after": probe["probe_accuracy"],
        }
    return out


def class_means(bridge: Any, ps: PromptSet, layer: int) -> dict[int, np.ndarray]:
    """Mean residual stream at ``layer`` over the probed tokens, per label."""
    hook = residual_hooks(bridge.cfg.n_layers)[layer]
    sums: dict[int, list] = {}
    for idx, tokens, _ in ps.batches(64):
        x = capture(bridge, tokens, [hook], home=bridge.cfg.device)[hook].float().cpu().numpy()
        for k, i in enumerate(idx):
            for e in ps.probed(i):
                s = sums.setdefault(int(ps.label[i][e]), [np.zeros(x.shape[-1]), 0])
                s[0] += x[k, e]
                s[1] += 1
    return {c: v[0] / v[1] for c, v in sums.items()}


def steer(
    bridge: Any,
    task: Task,
    layer: int,
    probe: LinearProbe,
    n_random: int,
    rng: np.random.Generator,
    clean: Outcome,
    readout: Readout,
) -> list[dict]:
    """Add the difference of two adjacent class directions at one unit's decision token: does P(end) move?

    From the second-to-last unit towards the last one (the end should become likelier)
    and back (less likely), scaled to the distance of the two classes' mean streams,
    against random directions of the same length.
    """
    ps, n_units = task.ps, task.n_units
    hook = residual_hooks(bridge.cfg.n_layers)[layer]
    w = probe.coef / probe.scale
    mu = class_means(bridge, ps, layer)
    out = []
    for src, dst in ((n_units - 2, n_units - 1), (n_units - 1, n_units - 2)):
        cols = np.searchsorted(probe.classes, [src, dst])
        direction = w[cols[1]] - w[cols[0]]
        step = float(np.linalg.norm(mu[dst] - mu[src]))
        vecs = {"probe": direction / np.linalg.norm(direction) * step}
        for r in range(n_random):
            v = rng.standard_normal(len(direction))
            vecs[f"random_{r}"] = v / np.linalg.norm(v) * step
        probs = {}
        for name, v in vecs.items():
            vt = torch.as_tensor(v, dtype=torch.float32, device=bridge.cfg.device)

            def hooks(idx: np.ndarray, lengths: np.ndarray, vt=vt, src=src) -> list:
                pos = np.array([int(task.decide[i][task.decide_unit[i] == src][0]) for i in idx])
                return [(hook, add_at(vt, np.arange(len(idx)), pos))]

            probs[name] = float(np.nanmean(measure(bridge, task, hooks, readout).end_prob[:, src]))
        out.append(
            {
                "layer": layer,
                "at_unit": src,
                "towards_unit": dst,
                "step_norm": step,
                "end_probability_clean": float(np.nanmean(clean.end_prob[:, src])),
                "end_probability_steered": probs["probe"],
                "end_probability_random": spread([v for k, v in probs.items() if k != "probe"]),
            }
        )
        logger.info(
            "steering at unit %d towards %d (layer %d): P(end) %.3f -> %.3f (random directions %.3f)",
            src,
            dst,
            layer,
            out[-1]["end_probability_clean"],
            probs["probe"],
            out[-1]["end_probability_random"]["mean"],
        )
    return out
