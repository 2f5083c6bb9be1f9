"""Causal tests: is the probe's direction used, which components compute it, where does it flow.

Three kinds of forward passes with TransformerLens hooks:

* **Subspace interventions** at the residual stream of a probe layer: project the probe's
  subspace out (``x - Q Qᵀ x``), or resample it (that component taken from another
  prompt at the same position), against random subspaces of the same rank; and steer
  along the difference of two class directions, against random directions of the same
  length. Measured by the model's own next-token loss.
* **Component ablations**: each head's ``hook_z`` slice or MLP output replaced by its
  mean at that position, or resampled from another prompt; measured by the probes'
  accuracy at later layers and by the heads' word-structure scores.
* **Activation patching** between prompts that share their token count but not their
  word boundaries; measured by the probe's logit difference of the two word indices.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from emergent_pos.analysis.forward import Component, PromptSet, pad, pattern_hook, run
from emergent_pos.analysis.heads import SCORES, score_patterns, target_masks
from emergent_pos.analysis.intervals import prompt_bootstrap
from emergent_pos.model.hooks import residual_hooks
from emergent_pos.probes.linear import LinearProbe

Hooks = list[tuple[str, Callable[[torch.Tensor, Any], torch.Tensor]]]
HookMaker = Callable[[np.ndarray, np.ndarray], Hooks]
"""(prompt indices, lengths) of a batch -> the hooks to run it with."""

LOSSES = ("all_tokens", "word_ends", "stop_decision")
"""Next-token loss over every token; at each word's last token (the next word or the
sentence end follows: where counting matters); and the binary loss of "does the sentence
end here?" (the end token's probability) at the same tokens."""


# --- subspaces ---------------------------------------------------------------------------


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


# --- measuring a forward pass ------------------------------------------------------------


@dataclass
class Outcome:
    """Per-prompt sums of one condition, so intervals can resample prompts (paired)."""

    loss: np.ndarray  # [prompt, loss]: summed per LOSSES
    loss_n: np.ndarray  # [prompt, loss]: tokens counted
    correct: np.ndarray  # [prompt, probe layer]: probed points predicted right
    points: np.ndarray  # [prompt]: probed points
    scores: np.ndarray  # [prompt, block, head]: summed share on the sentence's word starts
    score_n: np.ndarray  # [prompt]: queries counted
    end_prob: np.ndarray  # [prompt, word index]: probability of the sentence end after each word

    def mean_loss(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.loss.sum(0) / self.loss_n.sum(0)

    def accuracy(self) -> np.ndarray:
        return self.correct.sum(0) / max(self.points.sum(), 1)


@dataclass(frozen=True)
class Task:
    """Prompts with the sentence end appended, and what the measurement needs of them."""

    ps: PromptSet
    end_ids: list[int]  # appended to each prompt ([] for none)
    probes: dict[int, LinearProbe]  # probe layer -> probe whose accuracy is measured
    n_words: int
    masks: np.ndarray | None = None  # [prompt, q, k]: the word-start score's keys (None: no scores)

    def sequences(self, idx: np.ndarray) -> list[np.ndarray]:
        return [np.concatenate([self.ps.tokens[i], self.end_ids]).astype(np.int64) for i in idx]


def measure(bridge: Any, task: Task, make_hooks: HookMaker, batch_size: int = 64, desc: str | None = None) -> Outcome:
    """Run every prompt of ``task`` under ``make_hooks``' hooks and measure what changed."""
    ps = task.ps
    resid = residual_hooks(bridge.cfg.n_layers)
    layers = sorted(task.probes)
    n_blocks, n_heads = bridge.cfg.n_layers, bridge.cfg.n_heads
    out = Outcome(
        loss=np.zeros((len(ps), len(LOSSES))),
        loss_n=np.zeros((len(ps), len(LOSSES))),
        correct=np.zeros((len(ps), len(layers))),
        points=np.zeros(len(ps)),
        scores=np.zeros((len(ps), n_blocks, n_heads)),
        score_n=np.zeros(len(ps)),
        end_prob=np.full((len(ps), task.n_words), np.nan),
    )
    end = task.end_ids[0] if task.end_ids else None
    batches = [np.arange(s, min(s + batch_size, len(ps))) for s in range(0, len(ps), batch_size)]
    for idx in tqdm(batches, desc=desc, unit="batch", disable=desc is None, leave=False):
        seqs = task.sequences(idx)
        tokens = pad(seqs)
        lengths = np.array([len(s) for s in seqs])
        saved: dict[str, torch.Tensor] = {}
        names = [resid[layer] for layer in layers]
        if task.masks is not None:
            names += [pattern_hook(b) for b in range(n_blocks)]
        hooks = [*make_hooks(idx, lengths), *((n, _store(saved, n)) for n in names)]
        logits = run(bridge, tokens, hooks, logits=True).float()
        logp = torch.log_softmax(logits, -1)
        for k, i in enumerate(idx):
            n = lengths[k]
            ids = torch.as_tensor(seqs[k][1:], device=logp.device)
            nll = -logp[k, : n - 1].gather(1, ids[:, None])[:, 0].cpu().numpy()
            wi = ps.word_index[i]
            ends = np.flatnonzero(ps.ends_word[i] & (wi >= 0))
            ends = ends[ends < n - 1]  # a target follows
            out.loss[i, 0], out.loss_n[i, 0] = nll.sum(), len(nll)
            out.loss[i, 1], out.loss_n[i, 1] = nll[ends].sum(), len(ends)
            if end is not None:
                p_end = logp[k, ends, end].exp().cpu().numpy()
                is_end = wi[ends] == task.n_words - 1
                bce = -np.log(np.where(is_end, p_end, 1 - p_end).clip(1e-12))
                out.loss[i, 2], out.loss_n[i, 2] = bce.sum(), len(ends)
                out.end_prob[i, wi[ends]] = p_end
            probed = np.flatnonzero(ps.ends_word[i] & (wi >= 0))
            out.points[i] = len(probed)
            for j, layer in enumerate(layers):
                x = saved[resid[layer]][k, probed].float().cpu().numpy()
                out.correct[i, j] = (task.probes[layer].predict(x) == wi[probed]).sum()
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


def word_start_masks(ps: PromptSet, has_bos: bool) -> np.ndarray:
    """``[prompt, q, k]`` keys of the ``sentence_word_starts`` score (heads.py)."""
    width = max(len(t) for t in ps.tokens)
    s = SCORES.index("sentence_word_starts")
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


# --- component ablations -----------------------------------------------------------------


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
        saved: dict[str, torch.Tensor] = {}
        run(bridge, tokens, [(name, _store(saved, name)) for name in names])
        mask = (torch.arange(tokens.shape[1])[None, :] < torch.tensor([len(s) for s in seqs])[:, None]).float()
        for name in names:
            act = saved[name].float().cpu()
            m = mask.reshape(mask.shape + (1,) * (act.ndim - 2))
            total = sums.setdefault(name, torch.zeros((width, *act.shape[2:])))
            total[: act.shape[1]] += (act * m).sum(0)
        count[: tokens.shape[1]] += mask.sum(0)
    return {k: v / count.clamp(min=1).reshape((-1,) + (1,) * (v.ndim - 1)) for k, v in sums.items()}


def _store(saved: dict[str, torch.Tensor], name: str) -> Callable[[torch.Tensor, Any], torch.Tensor]:
    def save(t: torch.Tensor, hook: Any) -> torch.Tensor:
        saved[name] = t.detach()
        return t

    return save


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


# --- activation patching -----------------------------------------------------------------


def compositions(total: int, max_part: int) -> dict[int, list[tuple[int, ...]]]:
    """Every split of ``total`` tokens into words of 1..max_part tokens, by word count."""
    out: dict[int, list[tuple[int, ...]]] = {}
    for k in range(1, total + 1):
        for parts in itertools.product(range(1, max_part + 1), repeat=k):
            if sum(parts) == total:
                out.setdefault(k, []).append(parts)
    return out


@dataclass(frozen=True)
class Pairs:
    """Prompts A and B: the same prefix and token count, different word boundaries.

    The last token ends word ``index_a`` in A and word ``index_b = index_a + 1`` in B.
    """

    a: torch.Tensor  # [pair, len]
    b: torch.Tensor
    index_a: np.ndarray
    index_b: np.ndarray
    prefix_len: int


def make_pairs(
    words: dict[int, list[np.ndarray]], prefix: np.ndarray, n_pairs: int, n_tokens: int, rng: np.random.Generator
) -> Pairs:
    """Random pairs from the validation words (``words[n]``: token ids of words of n tokens)."""
    splits = compositions(n_tokens, max(words))
    splits = {k: [s for s in v if all(len(words.get(n, [])) for n in s)] for k, v in splits.items()}
    counts = [k for k in splits if splits[k] and splits.get(k + 1)]
    if not counts:
        raise ValueError(f"no two splits of {n_tokens} tokens differ by one word")
    a, b, ka = [], [], []
    for _ in range(n_pairs):
        k = int(rng.choice(counts))
        for seqs, parts in (
            (a, splits[k][rng.integers(len(splits[k]))]),
            (b, splits[k + 1][rng.integers(len(splits[k + 1]))]),
        ):
            ids = [words[n][rng.integers(len(words[n]))] for n in parts]
            seqs.append(np.concatenate([prefix, *ids]))
        ka.append(k - 1)
    index_a = np.array(ka)
    return Pairs(pad(a), pad(b), index_a, index_a + 1, len(prefix))


def probe_difference(resid: torch.Tensor, probe: LinearProbe, pairs: Pairs) -> np.ndarray:
    """Per pair: the probe's logit of A's index minus that of B's index, at the last token."""
    logits = probe.decision_function(resid[:, -1].float().cpu().numpy())
    col_a = np.searchsorted(probe.classes, pairs.index_a)
    col_b = np.searchsorted(probe.classes, pairs.index_b)
    rows = np.arange(len(logits))
    return logits[rows, col_a] - logits[rows, col_b]


def patch(
    bridge: Any, pairs: Pairs, probe: LinearProbe, layer: int, comps: list[Component], desc: str = "patching"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Recovered fraction per (component, word-token position) when A's output is patched into B.

    Returns ``[component, position]`` per-pair metric differences from B's
    (``m_patched - m_B``), and the clean ``m_A - m_B`` per pair; the recovered fraction
    is their ratio of means.
    """
    resid = residual_hooks(bridge.cfg.n_layers)[layer]
    names = sorted({c.hook for c in comps})
    saved_a: dict[str, torch.Tensor] = {}
    run(bridge, pairs.a, [(n, _store(saved_a, n)) for n in [*names, resid]])
    m_a = probe_difference(saved_a[resid], probe, pairs)
    saved_b: dict[str, torch.Tensor] = {}
    run(bridge, pairs.b, [(resid, _store(saved_b, resid))])
    m_b = probe_difference(saved_b[resid], probe, pairs)
    n_tokens = pairs.a.shape[1] - pairs.prefix_len
    gain = np.zeros((len(comps), n_tokens, len(m_a)))
    for ci, c in tqdm(list(enumerate(comps)), desc=desc, unit="component"):
        for p in range(n_tokens):
            pos = pairs.prefix_len + p

            def swap(x: torch.Tensor, hook: Any, c: Component = c, pos: int = pos) -> torch.Tensor:
                x = x.clone()
                donor = saved_a[c.hook].to(x.device, x.dtype)
                if c.head is not None:
                    x[:, pos, c.head] = donor[:, pos, c.head]
                else:
                    x[:, pos] = donor[:, pos]
                return x

            saved: dict[str, torch.Tensor] = {}
            run(bridge, pairs.b, [(c.hook, swap), (resid, _store(saved, resid))])
            gain[ci, p] = probe_difference(saved[resid], probe, pairs) - m_b
    return gain, m_a - m_b, m_b


def recovered(
    gain: np.ndarray, full: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ratio of means ``mean(gain) / mean(full)`` over pairs, with a pair-bootstrap interval."""
    frac = gain.mean(-1) / full.mean()
    sums = np.moveaxis(gain, -1, 0)  # [pair, ...]
    counts = np.broadcast_to(full.reshape((-1,) + (1,) * (sums.ndim - 1)), sums.shape)
    lo, hi = prompt_bootstrap(sums, counts, n_boot, seed)
    return frac, lo, hi
