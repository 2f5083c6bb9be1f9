"""Params of the ``activations`` stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from emergent_pos.config import ParamError


@dataclass(frozen=True)
class ActivationsConfig:
    dtype: Literal["float32", "float16"] = "float32"
    """Storage dtype of the HDF5 files; float16 halves them (the choice for large models)."""
    tokens: Literal["all", "units", "bounds", "ends"] = "all"
    """Which tokens are stored: every one; those of the counted units (not the prefix: any
    ``probe.token``); the first and last token of each unit (``probe.token: first`` or
    ``last``); or the last only (``last``, the default probe). The forward pass always runs
    every token; the probes refuse, in one line, a token the files lack."""
    compute_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    """Forward-pass precision: ``float16``/``bfloat16`` run matrix products under torch
    autocast (weights stay float32); worth it on a GPU, and it changes the values stored."""
    processing: Literal["raw", "compat"] = "raw"
    """``raw`` Hugging Face numerics, or TransformerLens compatibility mode (folded LN)."""
    extra_hooks: list[str] = field(default_factory=list)
    """TransformerLens hooks stored beside the residual streams (which are always stored:
    the probes read them), e.g. ``blocks.0.attn.hook_z`` or ``blocks.1.hook_mlp_out``; any
    hook whose activation is ``[batch, pos, ...]`` works."""

    def validate(self, section: str) -> None:
        if len(set(self.extra_hooks)) != len(self.extra_hooks):
            raise ParamError(f"{section}.extra_hooks", self.extra_hooks, "hooks must be distinct")
