"""TransformerLens hook names of the residual streams, and the pipeline's layer numbers.

Layer ``0`` is the embeddings (``blocks.0.hook_resid_pre``) and layer ``i + 1`` the
stream after block ``i`` (``blocks.{i}.hook_resid_post``): ``n_layers + 1`` streams.
Files, probes and predictions are keyed by the hook name; metrics and plots show the
layer number beside it. Both directions are defined here only, and so is ``capture``,
the one forward pass that reads hooks by these names (the model stage's check of a new
model and the activations stage's extraction).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

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


def capture(bridge: Any, tokens: torch.Tensor, names: list[str]) -> list[torch.Tensor]:
    """The activation ``[batch, pos, ...]`` at each hook, in ``names`` order.

    The hook that completes the set raises TransformerLens's ``StopAtLayerException``,
    which the bridge's forward catches: nothing after the last hook is computed.
    """
    import torch
    from transformer_lens.model_bridge.exceptions import StopAtLayerException

    captured: dict[str, torch.Tensor] = {}

    def saver(name: str) -> Any:
        # hook.name is the bridge's canonical name (``blocks.0.hook_in``), so key by the
        # alias we asked for
        def save(tensor: torch.Tensor, hook: Any) -> torch.Tensor:
            captured[name] = tensor.detach()
            if len(captured) == len(names):
                raise StopAtLayerException(tensor)
            return tensor

        return save

    with torch.inference_mode(), bridge.hooks(fwd_hooks=[(n, saver(n)) for n in names]):
        bridge(tokens, return_type=None)
    return [captured[n] for n in names]
