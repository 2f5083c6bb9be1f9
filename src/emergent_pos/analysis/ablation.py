"""Which components compute the index? Each head or block output replaced, and the probes measured.

A component (``components.py``: a head's ``hook_z`` slice, an MLP's or mixer's output) is
replaced by its mean at that position over the task's prompts (mean ablation) or by
another prompt's (resample ablation); the probes' accuracy at later layers and the
later heads' attention on unit starts are measured against the clean run, paired by
prompt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from emergent_pos.analysis.components import Component
from emergent_pos.analysis.forward import Readout, donors, pad
from emergent_pos.analysis.measure import Outcome, Task, measure, paired_delta
from emergent_pos.model.hooks import capture

logger = logging.getLogger(__name__)
HOWS = ("mean", "resample")


def position_means(bridge: Any, task: Task, comps: list[Component], batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Each ablated hook's mean activation at each position, over the task's sequences."""
    names = sorted({c.hook for c in comps})
    n = len(task.ps)
    width = max(len(s) for s in task.sequences(np.arange(n)))
    sums: dict[str, torch.Tensor] = {}
    count = torch.zeros(width)
    for start in range(0, n, batch_size):
        seqs = task.sequences(np.arange(start, min(start + batch_size, n)))
        tokens = pad(seqs)
        saved = capture(bridge, tokens, names, home=bridge.cfg.device)
        mask = (torch.arange(tokens.shape[1])[None, :] < torch.tensor([len(s) for s in seqs])[:, None]).float()
        for name in names:
            act = saved[name].float().cpu()
            m = mask.reshape(mask.shape + (1,) * (act.ndim - 2))
            total = sums.setdefault(name, torch.zeros((width, *act.shape[2:])))
            total[: act.shape[1]] += (act * m).sum(0)
        count[: tokens.shape[1]] += mask.sum(0)
    return {k: v / count.clamp(min=1).reshape((-1,) + (1,) * (v.ndim - 1)) for k, v in sums.items()}


def ablate(c: Component, how: str, means: dict[str, torch.Tensor], donor: np.ndarray | None = None) -> Callable:
    """Hook replacing component ``c`` by its position mean (``mean``) or a donor's (``resample``)."""

    def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
        x = x.clone()
        sl = (slice(None), slice(None), c.head) if c.head is not None else (slice(None), slice(None))
        if how == "mean":
            mean = means[c.hook][: x.shape[1]].to(x.device, x.dtype)
            x[sl] = mean[:, c.head] if c.head is not None else mean
        else:
            x[sl] = x[donor][sl]
        return x

    return hook


def ablations(
    bridge: Any, task: Task, comps: list[Component], clean: Outcome, best: int, readout: Readout
) -> list[dict]:
    """Mean and resample ablation of every component: accuracy drop of each later probe (with
    a paired interval), the loss at unit ends, and the largest change of a later head's
    unit-start score."""
    means = position_means(bridge, task, comps)
    layers = sorted(task.probes)
    clean_scores = clean.scores.sum(0) / max(clean.score_n.sum(), 1)
    rows = []
    for c in comps:
        for how in HOWS:
            draw = np.random.default_rng([7, c.block, c.head or 0])
            out = measure(
                bridge,
                task,
                lambda idx, lengths, c=c, how=how, draw=draw: [(c.hook, ablate(c, how, means, donors(lengths, draw)))],
                readout,
                desc=f"ablate {c.name} ({how})",
            )
            drop = paired_delta(out.correct, out.points[:, None], clean.correct, clean.points[:, None])
            row = {
                "component": c.name,
                "ablation": how,
                "loss_unit_ends": float(out.mean_loss()[1] - clean.mean_loss()[1]),
            }
            for j, layer in enumerate(layers):
                if layer > c.block:
                    row[f"accuracy_drop_layer_{layer}"] = float(drop["delta"][j])
                    row[f"accuracy_drop_layer_{layer}_ci"] = [float(drop["lo"][j]), float(drop["hi"][j])]
            if task.masks is not None:
                later = (out.scores.sum(0) / max(out.score_n.sum(), 1))[c.block + 1 :] - clean_scores[c.block + 1 :]
                if later.size:
                    b, h = np.unravel_index(np.abs(later).argmax(), later.shape)
                    row["largest_unit_start_score_change"] = {
                        "head": f"L{c.block + 1 + b}H{h}",
                        "change": float(later[b, h]),
                    }
            rows.append(row)
        mean_drop, resample_drop = (r.get(f"accuracy_drop_layer_{best}", 0.0) for r in rows[-2:])
        logger.info(
            "ablated %s: accuracy drop at layer %d: mean ablation %.3f, resample ablation %.3f",
            c.name,
            best,
            mean_drop,
            resample_drop,
        )
    return rows
