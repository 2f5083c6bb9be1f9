"""Where each attention head looks from a token inside a unit, against a relative-position null.

For every query token inside a unit (a word, sentence, item or line: ``prompts.scheme``),
a score is the share of the head's attention on a set of keys defined by the unit
structure (``SCORES``). The null asks what the same head would score if it kept its
attention-by-offset profile but ignored where units begin and end: the head's mean
attention at each offset ``q - k`` (averaged over every scored query of every prompt,
whatever its position) is laid out from each query over the keys at or before it,
renormalised, and scored against that prompt's own unit structure. A head that just
looks k tokens back scores its null; a head that follows unit boundaries beats it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from emergent_pos.analysis.components import pattern_hook
from emergent_pos.analysis.forward import PromptSet
from emergent_pos.analysis.intervals import prompt_bootstrap
from emergent_pos.model.hooks import capture

SCORES = (
    "own_unit_start",
    "prev_unit_end",
    "prev_unit_start",
    "anchor",
    "unit_starts_since_anchor",
    "bos",
)
"""(a) first token of the query's unit, (b) last and (c) first token of the previous unit,
(d) the anchor the query counts from (the prefix's last token, the list's colon, the
newline), (e) every unit-start token from the anchor to the query, (f) the first token
(BOS when prompts have one)."""


def target_masks(ps: PromptSet, i: int, width: int, has_bos: bool = True) -> np.ndarray:
    """``[score, query, key]``: which keys each score counts for each query of prompt ``i``.

    Rows of tokens outside units, and of first-unit tokens for the previous-unit scores,
    are all False: those queries do not count towards that score (nor any query towards
    ``bos`` when the prompts have no BOS token).
    """
    unit, starts, ends, anchor = ps.unit[i], ps.unit_start[i], ps.unit_end[i], ps.anchor[i]
    masks = np.zeros((len(SCORES), width, width), dtype=bool)
    first, last = {}, {}
    for u in np.unique(unit[unit >= 0]):
        at = np.flatnonzero(unit == u)
        flagged = at[starts[at]]
        first[int(u)] = int(flagged[0]) if len(flagged) else int(at[0])
        flagged = at[ends[at]]
        last[int(u)] = int(flagged[-1]) if len(flagged) else int(at[-1])
    unit_starts = np.flatnonzero(starts & (unit >= 0))
    for q in np.flatnonzero(unit >= 0):
        u = int(unit[q])
        masks[0, q, first[u]] = True
        if u - 1 in first:
            masks[1, q, last[u - 1]] = True
            masks[2, q, first[u - 1]] = True
        if anchor[q] >= 0:
            masks[3, q, anchor[q]] = True
            masks[4, q, unit_starts[(unit_starts > anchor[q]) & (unit_starts <= q)]] = True
        masks[5, q, 0] = has_bos
    masks[:, len(unit) :, :] = False
    return masks


@dataclass
class HeadScores:
    """Per-prompt sums of each score (observed and null) and the queries they cover."""

    observed: np.ndarray  # [prompt, layer, head, score]: summed attention share
    null: np.ndarray  # [prompt, layer, head, score]
    queries: np.ndarray  # [prompt, score]: queries counted
    null_pattern: np.ndarray  # [layer, head, q, k]: the null's attention-by-offset profile as a pattern

    def means(self) -> tuple[np.ndarray, np.ndarray]:
        """Observed and null mean share per (layer, head, score) over every counted query."""
        n = self.queries.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.observed.sum(0) / n, self.null.sum(0) / n


def score_patterns(patterns: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``[batch, layer, head, q, k]`` x ``[batch, score, q, k]`` -> ``[batch, layer, head, score]`` sums."""
    return np.einsum("blhqk,bsqk->blhs", patterns, masks.astype(patterns.dtype))


def offset_null(offset_sum: np.ndarray, offset_count: np.ndarray, width: int) -> np.ndarray:
    """``[layer, head, q, k]``: each head's mean attention-by-offset profile laid out as a pattern.

    ``offset_sum[..., d]`` is the attention summed over scored queries at offset
    ``d = q - k`` and ``offset_count[d]`` how many queries had that offset; the null
    query at ``q`` spreads attention over ``k <= q`` in proportion to the profile.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        profile = np.nan_to_num(offset_sum / offset_count)
    q, k = np.meshgrid(np.arange(width), np.arange(width), indexing="ij")
    d = q - k
    pattern = np.where(d >= 0, profile[..., np.clip(d, 0, width - 1)], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(pattern / pattern.sum(-1, keepdims=True))


def score_heads(bridge: Any, ps: PromptSet, has_bos: bool, batch_size: int = 64) -> HeadScores:
    """Every head's scores on ``ps``: one forward pass per batch, patterns of every block."""
    names = [pattern_hook(b) for b in range(bridge.cfg.n_layers)]

    def patterns() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for idx, tokens, _ in tqdm(list(ps.batches(batch_size)), desc="heads", unit="batch"):
            got = capture(bridge, tokens, names, home=bridge.cfg.device)
            yield idx, torch.stack([got[n] for n in names], 1).float().cpu().numpy()

    return score_pattern_batches(ps, patterns(), has_bos)


def score_pattern_batches(ps: PromptSet, batches: Iterable[tuple[np.ndarray, np.ndarray]], has_bos: bool) -> HeadScores:
    """Scores and null from ``(prompt indices, [batch, layer, head, q, k] patterns)`` batches."""
    width = max(len(t) for t in ps.tokens)
    observed: np.ndarray | None = None
    offset_sum: np.ndarray | None = None
    offset_count = np.zeros(width)
    all_masks = np.zeros((len(ps), len(SCORES), width, width), dtype=bool)
    q, k = np.meshgrid(np.arange(width), np.arange(width), indexing="ij")
    offset = np.clip(q - k, 0, None)
    for idx, pat in batches:
        n_layers, n_heads, t = pat.shape[1], pat.shape[2], pat.shape[-1]
        if observed is None:
            observed = np.zeros((len(ps), n_layers, n_heads, len(SCORES)))
            offset_sum = np.zeros((n_layers, n_heads, width))
        queries = np.zeros((len(idx), t), dtype=bool)
        for j, i in enumerate(idx):
            all_masks[i] = target_masks(ps, int(i), width, has_bos)
            queries[j, : len(ps.unit[i])] = ps.unit[i] >= 0
        observed[idx] = score_patterns(pat, all_masks[idx][:, :, :t, :t])
        # attention by offset, over the scored queries and the keys at or before them
        valid = queries[:, :, None] & (k[:t, :t] <= q[:t, :t])[None]
        offsets = np.broadcast_to(offset[:t, :t], valid.shape)[valid]
        for layer in range(n_layers):
            for head in range(n_heads):
                offset_sum[layer, head] += np.bincount(offsets, pat[:, layer, head][valid], minlength=width)
        offset_count += np.bincount(offsets, minlength=width)
    null_pattern = offset_null(offset_sum, offset_count, width)
    null = np.einsum("lhqk,psqk->plhs", null_pattern, all_masks.astype(float))
    return HeadScores(observed, null, all_masks.any(-1).sum(-1).astype(float), null_pattern)


def head_name(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


def summarize(scores: HeadScores, top_k: int) -> dict:
    """data/heads/heads.json: the best head per score and every head's scores, intervals and nulls."""
    obs, null = scores.means()
    counts = scores.queries[:, None, None, :]
    lo, hi = prompt_bootstrap(scores.observed, counts)
    excess = obs - null
    n_layers, n_heads, _ = obs.shape
    best = {}
    for s, name in enumerate(SCORES):
        if not np.isfinite(excess[..., s]).any():
            continue
        layer, head = np.unravel_index(np.nanargmax(excess[..., s]), excess.shape[:2])
        best[name] = {
            "head": head_name(int(layer), int(head)),
            "observed": float(obs[layer, head, s]),
            "null": float(null[layer, head, s]),
        }
    every = [
        {
            "head": head_name(layer, head),
            "layer": layer,
            "index": head,
            **{
                name: {
                    "observed": _num(obs[layer, head, s]),
                    "ci": [_num(lo[layer, head, s]), _num(hi[layer, head, s])],
                    "null": _num(null[layer, head, s]),
                }
                for s, name in enumerate(SCORES)
            },
        }
        for layer in range(n_layers)
        for head in range(n_heads)
    ]
    ranked = np.argsort(-np.nanmax(np.nan_to_num(excess, nan=-np.inf), axis=-1), axis=None)[:top_k]
    top = [head_name(*map(int, np.unravel_index(r, (n_layers, n_heads)))) for r in ranked]
    return {"n_prompts": int(len(scores.observed)), "best_by_score": best, "top_heads": top, "heads": every}


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None
