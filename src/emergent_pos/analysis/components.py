"""The residual stream's terms, read from the model itself: what attribution splits and ablations remove.

Every architecture writes its own terms into the stream (TransformerLens's adapters
declare them); ``Layout.read`` finds which ones a model has by one short forward pass:

* ``embed``: the token embedding (``hook_embed``; Gemma's ``sqrt(d_model)`` scale and
  Bloom's embedding norm included);
* ``pos_embed``: a learned position embedding added to the stream (``hook_pos_embed``:
  GPT-2, OPT). Rotary (Llama, Pythia, Qwen, Gemma) and ALiBi (Bloom) positions act
  inside attention and add nothing to the stream: no such term;
* ``L{b}H{h}``: each query head's output ``hook_z[..., h, :] @ W_O[h]``; in grouped-query
  models (Llama-3, Qwen2, Gemma) ``hook_z`` holds one slice per query head and the
  key/value heads they share need no term of their own;
* ``L{b}.attn_bias``: the output projection's bias ``b_O``, where it has one (not in
  Llama, Qwen2, Gemma, Mistral);
* where a norm sits after the attention output, before the residual add (Gemma-2/3's
  ``ln1_post``), every head's write and the bias go through that norm with the token's
  normalisation scale frozen at its value in the forward pass (the standard
  linearisation: exact for the sum, since the scale is the one the stream saw); a
  LayerNorm's own bias is the term ``L{b}.attn_norm_bias``;
* ``L{b}.attn``: the whole attention output, for a block whose heads cannot be split;
* ``L{b}.mlp``: the MLP's output ``hook_mlp_out`` (after its post-norm, when it has one),
  or ``L{b}.mixer``: a state-space block's ``hook_mixer_out`` (Mamba).

Parallel blocks (GPT-NeoX/Pythia, GPT-J, Phi) add the attention and MLP outputs to the
same stream, so they sum like sequential ones. ``Layout.read`` checks that the terms add
up to every residual stream of its forward pass (``Layout.error``); a model whose stream
they do not explain does not decompose, and the stages that need it say so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from emergent_pos.model.hooks import capture, residual_hooks

EMBED, POS_EMBED, FINAL = "hook_embed", "hook_pos_embed", "unembed.hook_in"
DECOMPOSE_RTOL = 1e-4
"""Largest |sum of terms - stream| / max |stream| at which a layout decomposes (float32 sums)."""


def z_hook(block: int) -> str:
    return f"blocks.{block}.attn.hook_z"


def pattern_hook(block: int) -> str:
    return f"blocks.{block}.attn.hook_pattern"


def _block_hook(block: int, name: str) -> str:
    return f"blocks.{block}.{name}"


@dataclass(frozen=True)
class Component:
    """One term of the residual stream: the hook that holds it and which slice of it."""

    name: str
    hook: str
    block: int  # -1 for the embeddings
    kind: str  # embed | pos_embed | head | attn_bias | attn_norm_bias | attn | mlp | mixer
    head: int | None = None  # the head's index in hook_z's head axis

    @property
    def first_layer(self) -> int:
        """The first residual-stream layer (0 = embeddings) that contains this component."""
        return self.block + 1

    @property
    def ablatable(self) -> bool:
        """A forward pass can replace it: a head's ``hook_z`` slice or a block's output."""
        return self.kind in ("head", "attn", "mlp", "mixer")


@dataclass(frozen=True)
class BlockLayout:
    """What one block writes into the stream."""

    heads: bool  # per-head hook_z with W_O
    attn_bias: bool  # b_O exists
    post_norm: str | None  # "rms" | "ln": a norm between the attention output and the residual add
    post_norm_bias: bool
    attn_out: bool  # attention output as one term (heads not split)
    mlp: str | None  # "mlp" | "mixer" | None


@dataclass(frozen=True)
class Layout:
    """The terms a model's residual stream is made of, and how well they add up."""

    n_blocks: int
    n_heads: int
    pos_embed: bool
    blocks: tuple[BlockLayout, ...]
    error: float  # largest relative error of the terms' sum against any residual stream

    @property
    def attention(self) -> bool:
        """Whether any block has attention heads whose patterns the heads stage can score."""
        return any(b.heads for b in self.blocks)

    @property
    def decomposes(self) -> bool:
        return self.error <= DECOMPOSE_RTOL

    @classmethod
    def read(cls, bridge: Any) -> Layout:
        """Which terms the model has, found by a short forward pass, and the check that they add up."""
        n_blocks = int(bridge.cfg.n_layers)
        candidates = [EMBED, POS_EMBED, *residual_hooks(n_blocks)]
        for b in range(n_blocks):
            candidates += [
                z_hook(b),
                _block_hook(b, "hook_resid_pre"),
                _block_hook(b, "hook_attn_out"),
                _block_hook(b, "hook_mlp_out"),
                _block_hook(b, "hook_mixer_out"),
                _block_hook(b, "ln1_post.hook_scale"),
            ]
        names = [n for n in dict.fromkeys(candidates) if n in bridge.hook_dict]
        vocab = int(bridge.cfg.d_vocab)
        tokens = (torch.arange(3, 11) % vocab).reshape(1, -1)
        got = capture(bridge, tokens, names, strict=False, home=bridge.cfg.device)
        shape = (1, tokens.shape[1])

        def fired(name: str) -> bool:
            t = got.get(name)
            return isinstance(t, torch.Tensor) and tuple(t.shape[:2]) == shape

        blocks = []
        for b in range(n_blocks):
            attn = _attention(bridge, b)
            heads = fired(z_hook(b)) and attn is not None and getattr(attn, "W_O", None) is not None
            norm = getattr(bridge.blocks[b], "ln1_post", None) if heads else None
            blocks.append(
                BlockLayout(
                    heads=heads,
                    attn_bias=heads and _bias(attn) is not None,
                    post_norm=None if norm is None else ("rms" if norm.uses_rms_norm else "ln"),
                    post_norm_bias=norm is not None and getattr(norm, "bias", None) is not None,
                    attn_out=not heads and fired(_block_hook(b, "hook_attn_out")),
                    mlp="mlp"
                    if fired(_block_hook(b, "hook_mlp_out"))
                    else "mixer"
                    if fired(_block_hook(b, "hook_mixer_out"))
                    else None,
                )
            )
        layout = cls(n_blocks, int(bridge.cfg.n_heads), fired(POS_EMBED), tuple(blocks), 0.0)
        reader = Reader(bridge, layout)
        if not all(fired(h) for h in reader.hooks):
            return replace(layout, error=float("inf"))
        b_idx, p_idx = np.zeros(shape[1], dtype=np.int64), np.arange(shape[1])
        vectors = reader.vectors(got, layout.components(), b_idx, p_idx)  # [n, C, d]
        comps = layout.components()
        error = 0.0
        for layer, hook in enumerate(residual_hooks(n_blocks)):
            if not fired(hook):
                return replace(layout, error=float("inf"))
            keep = np.array([c.first_layer <= layer for c in comps])
            total = vectors[:, keep].sum(1)
            stream = got[hook][0].float().cpu().numpy()
            error = max(error, float(np.abs(total - stream).max() / max(np.abs(stream).max(), 1e-12)))
        return replace(layout, error=error)

    def components(self) -> list[Component]:
        """Every term, in the order the residual stream accumulates them."""
        out = [Component("embed", EMBED, -1, "embed")]
        if self.pos_embed:
            out.append(Component("pos_embed", POS_EMBED, -1, "pos_embed"))
        for b, block in enumerate(self.blocks):
            if block.heads:
                out += [Component(f"L{b}H{h}", z_hook(b), b, "head", h) for h in range(self.n_heads)]
                if block.attn_bias:
                    out.append(Component(f"L{b}.attn_bias", z_hook(b), b, "attn_bias"))
                if block.post_norm_bias:
                    out.append(Component(f"L{b}.attn_norm_bias", z_hook(b), b, "attn_norm_bias"))
            elif block.attn_out:
                out.append(Component(f"L{b}.attn", _block_hook(b, "hook_attn_out"), b, "attn"))
            if block.mlp is not None:
                out.append(Component(f"L{b}.{block.mlp}", _block_hook(b, f"hook_{block.mlp}_out"), b, block.mlp))
        return out

    def describe(self) -> str:
        """One line for the logs: which terms, and how exactly they add up."""
        kinds = sorted({c.kind for c in self.components()})
        extras = []
        if any(b.post_norm for b in self.blocks):
            extras.append("heads through the post-attention norm (scale frozen)")
        if not any(b.attn_bias for b in self.blocks) and self.attention:
            extras.append("no attention bias")
        return (
            f"{len(self.components())} components ({', '.join(kinds)}"
            + (f"; {', '.join(extras)}" if extras else "")
            + f"), sum vs residual stream relative error {self.error:.1g}"
        )


def _attention(bridge: Any, block: int) -> Any:
    return getattr(bridge.blocks[block], "attn", None)


def _bias(attn: Any) -> torch.Tensor | None:
    try:
        return attn.b_O
    except AttributeError:  # TransformerLens raises for a bias-free projection
        return None


class Reader:
    """Each component's write into the stream at chosen tokens, from captured activations."""

    def __init__(self, bridge: Any, layout: Layout) -> None:
        self.layout = layout
        home = torch.device(bridge.cfg.device)
        self.w_o: dict[int, torch.Tensor] = {}
        self.b_o: dict[int, torch.Tensor] = {}
        self.gain: dict[int, torch.Tensor] = {}
        self.norm_bias: dict[int, torch.Tensor] = {}
        for b, block in enumerate(layout.blocks):
            if not block.heads:
                continue
            attn = _attention(bridge, b)
            self.w_o[b] = attn.W_O.detach().float().to(home)  # [head, d_head, d_model]
            if block.attn_bias:
                self.b_o[b] = _bias(attn).detach().float().to(home)
            if block.post_norm:
                norm = bridge.blocks[b].ln1_post
                weight = norm.weight.detach().float()
                self.gain[b] = (1.0 + weight if norm.uses_weight_offset else weight).to(home)
                if block.post_norm_bias:
                    self.norm_bias[b] = norm.bias.detach().float().to(home)

    @property
    def hooks(self) -> list[str]:
        """Every hook ``vectors`` reads."""
        names = [c.hook for c in self.layout.components() if c.kind != "attn_norm_bias"]
        names += [_block_hook(b, "ln1_post.hook_scale") for b, bl in enumerate(self.layout.blocks) if bl.post_norm]
        return list(dict.fromkeys(names))

    def vectors(self, got: dict[str, torch.Tensor], comps: list[Component], b: np.ndarray, p: np.ndarray) -> np.ndarray:
        """``[n, C, d]``: each component's write into the residual stream at tokens ``(b[i], p[i])``."""
        out = []
        for c in comps:
            if c.kind == "head":
                z = got[c.hook][b, p].float()
                z = z.reshape(len(b), self.layout.n_heads, -1)[:, c.head]
                out.append(self._through_norm(c.block, z @ self.w_o[c.block][c.head], got, b, p))
            elif c.kind == "attn_bias":
                bias = self.b_o[c.block].expand(len(b), -1)
                out.append(self._through_norm(c.block, bias, got, b, p))
            elif c.kind == "attn_norm_bias":
                out.append(self.norm_bias[c.block].expand(len(b), -1))
            else:
                out.append(got[c.hook][b, p].float())
        return torch.stack(out, 1).cpu().numpy()

    def _through_norm(
        self, block: int, write: torch.Tensor, got: dict[str, torch.Tensor], b: np.ndarray, p: np.ndarray
    ) -> torch.Tensor:
        """A part of the attention output after the block's post-norm, the token's scale frozen."""
        kind = self.layout.blocks[block].post_norm
        if kind is None:
            return write
        if kind == "ln":
            write = write - write.mean(-1, keepdim=True)
        scale = got[_block_hook(block, "ln1_post.hook_scale")][b, p].float().reshape(len(b), 1)
        return write / scale * self.gain[block]
