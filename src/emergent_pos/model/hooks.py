"""TransformerLens hook names of the residual streams, and the pipeline's layer numbers.

Layer ``0`` is the embeddings (``blocks.0.hook_resid_pre``) and layer ``i + 1`` the
stream after block ``i`` (``blocks.{i}.hook_resid_post``): ``n_layers + 1`` streams.
Files, probes and predictions are keyed by the hook name; metrics and plots show the
layer number beside it. Both directions are defined here only.
"""

from __future__ import annotations

import re

EMBEDDINGS = "blocks.0.hook_resid_pre"
_POST = re.compile(r"blocks\.(\d+)\.hook_resid_post")


def residual_hooks(n_layers: int) -> list[str]:
    """Residual-stream hook of each layer; index = layer number (0 = embeddings)."""
    return [EMBEDDINGS] + [f"blocks.{i}.hook_resid_post" for i in range(n_layers)]


def layer_of(hook: str) -> int:
    """Layer number of a residual-stream hook (the inverse of ``residual_hooks``)."""
    if hook == EMBEDDINGS:
        return 0
    match = _POST.fullmatch(hook)
    if not match:
        raise ValueError(f"{hook!r} is not a residual-stream hook")
    return int(match.group(1)) + 1
