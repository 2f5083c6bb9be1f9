"""One forward pass of every prompt under some hooks, and what changed: the measurement behind every causal test.

A ``Task`` is the prompts with the scheme's end where the count puts it
(``schemes.base.Decision``: the full stop after the last word, the list's closing full
stop, the line break at the width); ``measure`` runs them under a hook maker's hooks and
keeps per-prompt sums (so intervals resample prompts, paired with the clean run): the
model's next-token loss (``LOSSES``), the probes' accuracy at later layers, and the heads'
attention share on the unit starts since the anchor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from emergent_pos.analysis.components import FINAL, pattern_hook
from emergent_pos.analysis.forward import PromptSet, Readout, pad
from emergent_pos.analysis.heads import SCORES, score_patterns, target_masks
from emergent_pos.dataset.schemes.base import Decision, TokenText
from emergent_pos.model.hooks import capture, residual_hooks
from emergent_pos.probes.linear import LinearProbe

Hooks = list[tuple[str, Callable[[torch.Tensor, Any], torch.Tensor]]]
HookMaker = Callable[[np.ndarray, np.ndarray], Hooks]
"""(prompt indices, lengths) of a batch -> the hooks to run it with."""

LOSSES = ("all_tokens", "decision_tokens", "stop_decision")
"""Next-token loss over every token; at the decision tokens (where the next unit or the end
follows: where counting matters); and the binary loss of "does it end here?" (the end
token's probability) at the same tokens."""


@dataclass
class Outcome:
    """Per-prompt sums of one condition, so intervals can resample prompts (paired)."""

    loss: np.ndarray  # [prompt, loss]: summed per LOSSES
    loss_n: np.ndarray  # [prompt, loss]: tokens counted
    correct: np.ndarray  # [prompt, probe layer]: probed points predicted right
    points: np.ndarray  # [prompt]: probed points
    scores: np.ndarray  # [prompt, block, head]: summed share on the unit starts since the anchor
    score_n: np.ndarray  # [prompt]: queries counted
    end_prob: np.ndarray  # [prompt, unit]: probability of the end token at each unit's decision token
    end_sums: np.ndarray  # [prompt, 2]: summed end probability where the end follows, where it does not
    end_n: np.ndarray  # [prompt, 2]: decisions counted in each

    def mean_loss(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.loss.sum(0) / self.loss_n.sum(0)

    def accuracy(self) -> np.ndarray:
        return self.correct.sum(0) / max(self.points.sum(), 1)


@dataclass(frozen=True)
class Task:
    """The sequences run, where the count decides the next token, and what else is measured."""

    ps: PromptSet
    seqs: list[np.ndarray]  # per prompt: the tokens run (the prompt, with its end where the scheme puts it)
    decide: list[np.ndarray]  # per prompt: positions of the decision tokens
    ends_here: list[np.ndarray]  # per prompt: the end token comes next at that decision
    decide_unit: list[np.ndarray]  # per prompt: the unit each decision closes
    end_id: int | None  # the end token (None: no stop decision is measured)
    probes: dict[int, LinearProbe]  # probe layer -> probe whose accuracy is measured
    n_units: int
    masks: np.ndarray | None = None  # [prompt, q, k]: the unit-start score's keys (None: no scores)

    @classmethod
    def build(
        cls,
        ps: PromptSet,
        decision: Decision | None,
        tokenizer: Any,
        probes: dict[int, LinearProbe],
        n_units: int,
        masks: np.ndarray | None = None,
    ) -> Task:
        """The scheme's ``decision`` on ``ps`` (None: the prompts as they are, no stop decision)."""
        end_id = TokenText(tokenizer).after(decision.end)[0] if decision else None
        seqs, decide, ends, units = [], [], [], []
        for i in range(len(ps)):
            t, unit = ps.tokens[i].astype(np.int64), ps.unit[i]
            closes = np.flatnonzero(ps.unit_end[i] & (unit >= 0))
            if decision is None:
                seq, at, here = t, closes, np.zeros(len(closes), dtype=bool)
            elif not decision.append:  # the prompt holds its ends: does the end token follow?
                at = closes[closes < len(t) - 1]
                seq, here = t, t[at + 1] == end_id
            else:
                at = closes - 1 if decision.at == "before_unit_end" else closes
                last = t[:-1] if decision.at == "before_unit_end" else t  # the last separator gives way to the end
                seq, here = np.concatenate([last, [end_id]]), ps.label[i][at] == n_units - 1
            keep = at < len(seq) - 1  # a target follows
            seqs.append(seq)
            decide.append(at[keep])
            ends.append(here[keep])
            units.append(unit[at[keep]])
        return cls(ps, seqs, decide, ends, units, end_id, probes, n_units, masks)

    def sequences(self, idx: np.ndarray) -> list[np.ndarray]:
        return [self.seqs[i] for i in idx]


def measure(
    bridge: Any,
    task: Task,
    make_hooks: HookMaker,
    readout: Readout | None = None,
    batch_size: int = 64,
    desc: str | None = None,
) -> Outcome:
    """Run every prompt of ``task`` under ``make_hooks``' hooks and measure what changed.

    The forward pass stops at the final residual stream; ``readout`` turns it into
    next-token log-probabilities a bounded chunk of positions at a time (never a whole
    batch's full-vocabulary logits).
    """
    readout = readout or Readout(bridge)
    ps = task.ps
    resid = residual_hooks(bridge.cfg.n_layers)
    layers = sorted(task.probes)
    n_blocks, n_heads = bridge.cfg.n_layers, bridge.cfg.n_heads
    width = max([task.n_units, *(int(u.max()) + 1 for u in task.decide_unit if len(u))])
    out = Outcome(
        loss=np.zeros((len(ps), len(LOSSES))),
        loss_n=np.zeros((len(ps), len(LOSSES))),
        correct=np.zeros((len(ps), len(layers))),
        points=np.zeros(len(ps)),
        scores=np.zeros((len(ps), n_blocks, n_heads)),
        score_n=np.zeros(len(ps)),
        end_prob=np.full((len(ps), width), np.nan),
        end_sums=np.zeros((len(ps), 2)),
        end_n=np.zeros((len(ps), 2)),
    )
    end = task.end_id
    names = [FINAL, *(resid[layer] for layer in layers)]
    if task.masks is not None:
        names += [pattern_hook(b) for b in range(n_blocks)]
    batches = [np.arange(s, min(s + batch_size, len(ps))) for s in range(0, len(ps), batch_size)]
    for idx in tqdm(batches, desc=desc, unit="batch", disable=desc is None, leave=False):
        seqs = task.sequences(idx)
        lengths = np.array([len(s) for s in seqs])
        saved = capture(bridge, pad(seqs), names, edits=make_hooks(idx, lengths), home=bridge.cfg.device)
        # every position with a next token, one row each; log-probabilities in chunks
        rb = np.concatenate([np.full(n - 1, k) for k, n in enumerate(lengths)])
        rp = np.concatenate([np.arange(n - 1) for n in lengths])
        target = np.concatenate([s[1:] for s in seqs])
        cols = [target] if end is None else [target, np.full(len(rb), end)]
        logp = readout.gather(saved[FINAL], rb, rp, cols)
        starts = np.concatenate([[0], np.cumsum(lengths - 1)])
        for k, i in enumerate(idx):
            nll = -logp[0][starts[k] : starts[k + 1]]
            at = task.decide[i]
            out.loss[i, 0], out.loss_n[i, 0] = nll.sum(), len(nll)
            out.loss[i, 1], out.loss_n[i, 1] = nll[at].sum(), len(at)
            if end is not None:
                p_end = np.exp(logp[1][starts[k] : starts[k + 1]][at])
                bce = -np.log(np.where(task.ends_here[i], p_end, 1 - p_end).clip(1e-12))
                out.loss[i, 2], out.loss_n[i, 2] = bce.sum(), len(at)
                out.end_prob[i, task.decide_unit[i]] = p_end
                here = task.ends_here[i]
                out.end_sums[i] = p_end[here].sum(), p_end[~here].sum()
                out.end_n[i] = here.sum(), (~here).sum()
            probed = ps.probed(i)
            out.points[i] = len(probed)
            for j, layer in enumerate(layers):
                x = saved[resid[layer]][k, probed].float().cpu().numpy()
                out.correct[i, j] = (task.probes[layer].predict(x) == ps.label[i][probed]).sum()
        if task.masks is not None:
            # one block at a time to the host: a split model's blocks sit on different devices
            pat = np.stack([saved[pattern_hook(b)].float().cpu().numpy() for b in range(n_blocks)], 1)
            t = pat.shape[-1]
            m = np.zeros((len(idx), len(SCORES), t, t), dtype=bool)
            w = min(t, task.masks.shape[-1])
            m[:, 0, :w, :w] = task.masks[idx][:, :w, :w]
            out.scores[idx] = score_patterns(pat, m)[..., 0]
            out.score_n[idx] = task.masks[idx].any(-1).sum(-1)
    return out


def unit_start_masks(ps: PromptSet, has_bos: bool) -> np.ndarray:
    """``[prompt, q, k]`` keys of the ``unit_starts_since_anchor`` score (heads.py)."""
    width = max(len(t) for t in ps.tokens)
    s = SCORES.index("unit_starts_since_anchor")
    return np.stack([target_masks(ps, i, width, has_bos)[s] for i in range(len(ps))])


def paired_delta(base: np.ndarray, base_n: np.ndarray, new: np.ndarray, new_n: np.ndarray) -> dict:
    """``new - base`` of a per-prompt ratio of sums, with a paired prompt-bootstrap interval."""
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = new.sum(0) / new_n.sum(0) - base.sum(0) / base_n.sum(0)
    stacked = np.stack([new, base], -1)
    counts = np.stack([new_n, base_n], -1)
    rng = np.random.default_rng(0)
    draws = rng.integers(0, len(base), size=(1000, len(base)))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.stack([stacked[d].sum(0) / counts[d].sum(0) for d in draws])
    diffs = ratios[..., 0] - ratios[..., 1]
    lo, hi = np.nanquantile(diffs, [0.025, 0.975], axis=0)
    return {"delta": delta, "lo": lo, "hi": hi}
