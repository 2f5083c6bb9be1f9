"""Where does the count flow? Activation patching between prompts that split the same tokens differently.

Prompts A and B share the prefix and their token count, not their unit boundaries
(the seed's 3|1 against 1|2|1 words, and the same for sentences, items and lines): the
last token ends unit ``k`` in A and unit ``k + 1`` in B. One component's output at one
position is copied from A into B, and the probe's logit difference of the two indices at
the last token says how much of A's answer it carries (the recovered fraction: 0 = B's,
1 = A's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from emergent_pos.analysis.components import Component
from emergent_pos.analysis.forward import PromptSet, pad
from emergent_pos.analysis.intervals import prompt_bootstrap
from emergent_pos.model.hooks import capture, residual_hooks
from emergent_pos.probes.linear import LinearProbe


def compositions(total: int, max_part: int) -> dict[int, list[tuple[int, ...]]]:
    """Every split of ``total`` tokens into units of 1..max_part tokens, by unit count."""
    out: dict[int, list[tuple[int, ...]]] = {}

    def extend(prefix: tuple[int, ...], left: int) -> None:
        if left == 0:
            out.setdefault(len(prefix), []).append(prefix)
            return
        for part in range(1, min(max_part, left) + 1):
            extend((*prefix, part), left - part)

    extend((), total)
    return out


@dataclass(frozen=True)
class Pairs:
    """Prompts A and B: the same prefix and token count, different unit boundaries.

    The last token ends unit ``index_a`` in A and unit ``index_b = index_a + 1`` in B.
    """

    a: torch.Tensor  # [pair, len]
    b: torch.Tensor
    index_a: np.ndarray
    index_b: np.ndarray
    prefix_len: int


def units_by_length(ps: PromptSet) -> dict[int, list[np.ndarray]]:
    """Token ids of every unit of the prompts, by token count (what pairs are built from)."""
    units: dict[int, list[np.ndarray]] = {}
    for i in range(len(ps)):
        for u in np.unique(ps.unit[i][ps.unit[i] >= 0]):
            ids = ps.tokens[i][ps.unit[i] == u]
            units.setdefault(len(ids), []).append(ids)
    return units


def make_pairs(
    units: dict[int, list[np.ndarray]], prefix: np.ndarray, n_pairs: int, n_tokens: int, rng: np.random.Generator
) -> Pairs:
    """Random pairs from the validation units (``units[n]``: token ids of units of n tokens)."""
    splits = compositions(n_tokens, max(units))
    splits = {k: [s for s in v if all(len(units.get(n, [])) for n in s)] for k, v in splits.items()}
    counts = [k for k in splits if splits[k] and splits.get(k + 1)]
    if not counts:
        raise ValueError(f"no two splits of {n_tokens} tokens differ by one unit")
    a, b, ka = [], [], []
    for _ in range(n_pairs):
        k = int(rng.choice(counts))
        for seqs, parts in (
            (a, splits[k][rng.integers(len(splits[k]))]),
            (b, splits[k + 1][rng.integers(len(splits[k + 1]))]),
        ):
            ids = [units[n][rng.integers(len(units[n]))] for n in parts]
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
    """Recovered fraction per (component, body-token position) when A's output is patched into B.

    Returns ``[component, position, pair]`` metric differences from B's
    (``m_patched - m_B``), the clean ``m_A - m_B`` and ``m_B`` per pair; the recovered
    fraction is the ratio of their means (``recovered``).
    """
    resid = residual_hooks(bridge.cfg.n_layers)[layer]
    home = bridge.cfg.device
    names = sorted({c.hook for c in comps})
    saved_a = capture(bridge, pairs.a, [*names, resid], home=home)
    m_a = probe_difference(saved_a[resid], probe, pairs)
    m_b = probe_difference(capture(bridge, pairs.b, [resid], home=home)[resid], probe, pairs)
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

            patched = capture(bridge, pairs.b, [resid], edits=[(c.hook, swap)], home=home)[resid]
            gain[ci, p] = probe_difference(patched, probe, pairs) - m_b
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
