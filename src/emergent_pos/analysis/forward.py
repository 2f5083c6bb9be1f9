"""What every mechanism stage shares: the prompts it runs, batches, and next-token read-outs.

The residual stream's terms (components) are in ``components.py``; the one forward pass
that reads hooks by name is ``model.hooks.capture``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from emergent_pos.analysis.components import FINAL
from emergent_pos.dataset.labels import LABEL
from emergent_pos.dataset.prompts import prompt_token_ids
from emergent_pos.errors import NotApplicable
from emergent_pos.model.hooks import capture

READOUT_RTOL = 1e-4
"""Largest relative error of the chunked read-out against the model's own logits."""


@dataclass(frozen=True)
class PromptSet:
    """Prompts of the main evaluation set with their unit structure, one array per prompt.

    ``label`` is what the probes predict (-1 where undefined; an ordinal count binned as
    the probes bin it), ``unit`` the unit each token is in (-1 outside), ``anchor`` the
    position each token counts from; ``rows`` are the prompts-table rows (the activation
    rows) of each prompt's tokens.
    """

    tokens: list[np.ndarray]
    label: list[np.ndarray]
    unit: list[np.ndarray]
    unit_start: list[np.ndarray]
    unit_end: list[np.ndarray]
    anchor: list[np.ndarray]
    rows: list[np.ndarray]
    prompt_id: np.ndarray

    @classmethod
    def from_table(
        cls, table: pd.DataFrame, n_units: int, n_prompts: int, bin_width: int = 1, prefix_id: int = 0
    ) -> PromptSet:
        """The first ``n_prompts`` prompts of one prefix (0: the training prefix) at ``n_units`` units."""
        table = table.reset_index(drop=True)
        keep = (table.prefix_id.to_numpy() == prefix_id) & (table.n_units.to_numpy() == n_units)
        ids = pd.unique(table.prompt_id[keep])[:n_prompts]
        part = table[table.prompt_id.isin(ids)]
        starts = np.flatnonzero(part.position.to_numpy() == 0)[1:]

        def split(values: np.ndarray) -> list[np.ndarray]:
            return np.split(values, starts)

        label = part[LABEL].to_numpy()
        return cls(
            tokens=prompt_token_ids(part),
            label=split(np.where(label >= 0, label // bin_width, -1)),
            unit=split(part.unit.to_numpy()),
            unit_start=split(part.unit_start.to_numpy()),
            unit_end=split(part.unit_end.to_numpy()),
            anchor=split(part.anchor.to_numpy()),
            rows=split(part.index.to_numpy()),
            prompt_id=np.asarray(ids),
        )

    def __len__(self) -> int:
        return len(self.tokens)

    def start(self, i: int) -> int:
        """Position of prompt ``i``'s first counted token: everything before it is prefix and anchor."""
        return int(np.argmax(self.label[i] >= 0))

    def probed(self, i: int) -> np.ndarray:
        """Positions the probes read in prompt ``i``: the last token of each unit."""
        return np.flatnonzero(self.unit_end[i] & (self.label[i] >= 0))

    def take(self, idx: np.ndarray | list[int]) -> PromptSet:
        pick = [int(i) for i in idx]
        fields = ("tokens", "label", "unit", "unit_start", "unit_end", "anchor", "rows")
        return PromptSet(*([getattr(self, f)[i] for i in pick] for f in fields), prompt_id=self.prompt_id[pick])

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, torch.Tensor, np.ndarray]]:
        """(prompt indices, right-padded token ids, lengths) of consecutive prompts."""
        for start in range(0, len(self), batch_size):
            idx = np.arange(start, min(start + batch_size, len(self)))
            yield idx, pad([self.tokens[i] for i in idx]), np.array([len(self.tokens[i]) for i in idx])


def pad(seqs: list[np.ndarray], pad_id: int = 0) -> torch.Tensor:
    """Right-padded ids (harmless for a causal model: padding follows every real token)."""
    out = torch.full((len(seqs), max(len(s) for s in seqs)), pad_id, dtype=torch.long)
    for k, s in enumerate(seqs):
        out[k, : len(s)] = torch.as_tensor(np.asarray(s, dtype=np.int64))
    return out


class Readout:
    """Next-token log-probabilities from the final residual stream, a bounded chunk at a time.

    The forward pass stops at the unembedding's input (``unembed.hook_in``, after the final
    norm); the unembedding and the architecture's own logit transform (Gemma-2's soft cap,
    Cohere's scale: ``adapter.apply_output_logits_transform``) then run on ``rows``
    positions at a time (``budget_bytes`` of logits: about 8,000 positions of the organism's
    2,000-token vocabulary, about 130 of Llama-3's 128k), so a batch's full-vocabulary logits
    are never held at once. ``check`` compares the result with the model's own logits.
    """

    def __init__(self, bridge: Any, budget_bytes: int = 64 << 20) -> None:
        self.bridge = bridge
        self.device = next(bridge.unembed.parameters()).device
        self.rows = max(1, budget_bytes // (4 * int(bridge.cfg.d_vocab)))  # positions per chunk

    def log_probs(self, final: torch.Tensor) -> torch.Tensor:
        """``[n, d_model]`` final residual -> ``[n, vocab]`` log-probabilities of the next token."""
        with torch.inference_mode():
            logits = self.bridge.unembed(final[None].to(self.device))
            logits = self.bridge.adapter.apply_output_logits_transform(logits)[0]
        return torch.log_softmax(logits.float(), -1)

    def gather(self, final: torch.Tensor, b: np.ndarray, p: np.ndarray, ids: list[np.ndarray]) -> list[np.ndarray]:
        """Log-probabilities of chosen next tokens at positions ``(b[i], p[i])`` of ``final``
        (``[batch, pos, d_model]``): ``[n, len(ids)]`` columns, one per ``ids[j][i]``, computed
        ``self.rows`` positions at a time."""
        out = [np.empty(len(b), dtype=np.float64) for _ in ids]
        for start in range(0, len(b), self.rows):
            sl = slice(start, start + self.rows)
            logp = self.log_probs(final[b[sl], p[sl]])
            for j, col in enumerate(ids):
                picked = torch.as_tensor(col[sl], device=logp.device)
                out[j][sl] = logp.gather(1, picked[:, None])[:, 0].double().cpu().numpy()
        return out

    def check(self, tokens: np.ndarray, model: str) -> float:
        """Relative error of the read-out against the model's own logits on one prompt; refused above
        ``READOUT_RTOL``: the stage does not apply to an architecture whose logits are more
        than its unembedding of the final residual stream and its declared transform."""
        ids = torch.as_tensor(np.asarray(tokens, dtype=np.int64))[None].to(self.bridge.cfg.device)
        final = capture(self.bridge, ids, [FINAL], home=self.device)[FINAL][0]
        with torch.inference_mode():
            full = torch.log_softmax(self.bridge(ids, return_type="logits")[0].float(), -1).to(self.device)
        ours = self.log_probs(final)
        error = float((ours - full).abs().max() / full.abs().max().clamp(min=1e-12))
        if not error <= READOUT_RTOL:
            raise NotApplicable(
                f"next-token log-probabilities read from {model}'s final residual stream differ from the "
                f"model's own by {error:.2g} (relative): its logits are transformed in a way the read-out "
                "does not know"
            )
        return error


def donors(lengths: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each prompt, another one at least as long (itself when none is): resampling
    then never reads a padding position."""
    out = np.arange(len(lengths))
    for i, n in enumerate(lengths):
        pool = np.flatnonzero((lengths >= n) & (np.arange(len(lengths)) != i))
        if len(pool):
            out[i] = rng.choice(pool)
    return out


def best_layer(pred: pd.DataFrame, n_units: int) -> int:
    """The layer whose probe is most accurate on the main validation set (ties: the earliest)."""
    main = pred[(pred.prefix_id == 0) & (pred.n_units == n_units)]
    acc = (main.probe == main[LABEL]).groupby(main.layer).mean()
    return int(acc.idxmax())
