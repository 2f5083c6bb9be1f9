"""What every mechanism stage shares: the prompts it runs, batches, and the model's components.

A *component* is one term of the residual stream's sum: the token embedding
(``hook_embed``), the position embedding (``hook_pos_embed``, where the model has one),
each head's output (``hook_z`` through ``W_O``), each block's attention bias (``b_O``)
and each MLP's output (``hook_mlp_out``). Their names (``embed``, ``pos_embed``,
``L0H3``, ``L0.attn_bias``, ``L0.mlp``) are defined here only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from emergent_pos.dataset.labels import LABEL
from emergent_pos.dataset.prompts import prompt_token_ids
from emergent_pos.errors import UserError

EMBED, POS_EMBED = "hook_embed", "hook_pos_embed"


def z_hook(block: int) -> str:
    return f"blocks.{block}.attn.hook_z"


def mlp_hook(block: int) -> str:
    return f"blocks.{block}.hook_mlp_out"


def pattern_hook(block: int) -> str:
    return f"blocks.{block}.attn.hook_pattern"


@dataclass(frozen=True)
class Component:
    """One term of the residual stream: where it is read and which slice of it."""

    name: str
    hook: str
    block: int  # -1 for the embeddings
    head: int | None = None  # the head's index in hook_z's head axis

    @property
    def first_layer(self) -> int:
        """The first residual-stream layer (0 = embeddings) that contains this component."""
        return self.block + 1


def components(n_layers: int, n_heads: int, has_pos_embed: bool, biases: bool = True) -> list[Component]:
    """Every component in the order the residual stream accumulates them."""
    out = [Component("embed", EMBED, -1)]
    if has_pos_embed:
        out.append(Component("pos_embed", POS_EMBED, -1))
    for b in range(n_layers):
        out += [Component(f"L{b}H{h}", z_hook(b), b, h) for h in range(n_heads)]
        if biases:
            out.append(Component(f"L{b}.attn_bias", z_hook(b), b))
        out.append(Component(f"L{b}.mlp", mlp_hook(b), b))
    return out


def ablatable(comps: list[Component]) -> list[Component]:
    """The heads and MLPs: components a forward pass can replace."""
    return [c for c in comps if c.head is not None or c.name.endswith(".mlp")]


def model_components(bridge: Any) -> list[Component]:
    return components(bridge.cfg.n_layers, bridge.cfg.n_heads, POS_EMBED in bridge.hook_dict)


@dataclass(frozen=True)
class PromptSet:
    """Prompts of the main evaluation set with their word structure, one array per prompt.

    ``word_index`` is -1 outside the words; ``rows`` are the prompts-table rows (the
    activation rows) of each prompt's tokens.
    """

    tokens: list[np.ndarray]
    word_index: list[np.ndarray]
    starts_word: list[np.ndarray]
    ends_word: list[np.ndarray]
    rows: list[np.ndarray]
    prompt_id: np.ndarray

    @classmethod
    def from_table(cls, table: pd.DataFrame, n_words: int, n_prompts: int) -> PromptSet:
        """The first ``n_prompts`` prompts of the training prefix at ``n_words`` words."""
        table = table.reset_index(drop=True)
        keep = (table.prefix_id.to_numpy() == 0) & (table.n_words.to_numpy() == n_words)
        ids = pd.unique(table.prompt_id[keep])[:n_prompts]
        part = table[table.prompt_id.isin(ids)]
        starts = np.flatnonzero(part.position.to_numpy() == 0)[1:]

        def split(col: str) -> list[np.ndarray]:
            return np.split(part[col].to_numpy(), starts)

        return cls(
            tokens=prompt_token_ids(part),
            word_index=split(LABEL),
            starts_word=split("is_word_start"),
            ends_word=split("is_word_end"),
            rows=np.split(part.index.to_numpy(), starts),
            prompt_id=np.asarray(ids),
        )

    def __len__(self) -> int:
        return len(self.tokens)

    def anchor(self, i: int) -> int:
        """Position of the sentence anchor: the last token before the first word."""
        return int(np.argmax(self.word_index[i] >= 0)) - 1

    def take(self, idx: np.ndarray | list[int]) -> PromptSet:
        pick = [int(i) for i in idx]
        return PromptSet(
            *(
                [getattr(self, f)[i] for i in pick]
                for f in ("tokens", "word_index", "starts_word", "ends_word", "rows")
            ),
            prompt_id=self.prompt_id[pick],
        )

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


def run(bridge: Any, tokens: torch.Tensor, hooks: list[tuple[str, Any]], logits: bool = False) -> torch.Tensor | None:
    """One forward pass with ``hooks``; the logits when asked (otherwise none computed)."""
    with torch.inference_mode(), bridge.hooks(fwd_hooks=hooks):
        out = bridge(tokens.to(bridge.cfg.device), return_type="logits" if logits else None)
    return out


def capture(
    bridge: Any, tokens: torch.Tensor, names: list[str], hooks: list[tuple[str, Any]] = ()
) -> dict[str, torch.Tensor]:
    """Activations at ``names`` (after any ``hooks`` on the same points have run), all on
    the bridge's device (the embeddings'), where a split model's stacked weights live too."""
    saved: dict[str, torch.Tensor] = {}
    home = torch.device(bridge.cfg.device)

    def saver(name: str) -> Any:
        def save(t: torch.Tensor, hook: Any) -> torch.Tensor:
            saved[name] = t.detach().to(home)
            return t

        return save

    run(bridge, tokens, [*hooks, *((n, saver(n)) for n in names)])
    return saved


def require_hooks(bridge: Any, names: list[str], stage: str) -> None:
    """Fail in one line when the model lacks a hook a stage needs (an unsupported family)."""
    missing = [n for n in names if n not in bridge.hook_dict]
    if not missing:
        return
    why = "no attention heads, e.g. a state-space model" if ".attn." in missing[0] else "another layout"
    raise UserError(
        f"stage {stage}: this model has no TransformerLens hook {missing[0]!r} ({why}), so this stage "
        "does not apply: `dvc repro report tokens` runs the rest"
    )


def output_weights(bridge: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``W_O`` (``[block, head, d_head, d_model]``) and ``b_O`` (``[block, d_model]``)."""
    return bridge.W_O.detach(), bridge.b_O.detach()


def donors(lengths: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each prompt, another one at least as long (itself when none is): resampling
    then never reads a padding position."""
    out = np.arange(len(lengths))
    for i, n in enumerate(lengths):
        pool = np.flatnonzero((lengths >= n) & (np.arange(len(lengths)) != i))
        if len(pool):
            out[i] = rng.choice(pool)
    return out


def best_layer(pred: pd.DataFrame, n_words: int) -> int:
    """The layer whose probe is most accurate on the main validation set (ties: the earliest)."""
    main = pred[(pred.prefix_id == 0) & (pred.n_words == n_words)]
    acc = (main.probe == main[LABEL]).groupby(main.layer).mean()
    return int(acc.idxmax())
