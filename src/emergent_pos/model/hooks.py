"""TransformerLens hook names of the residual streams, and the pipeline's layer numbers.

Layer ``0`` is the embeddings (``blocks.0.hook_resid_pre``) and layer ``i + 1`` the
stream after block ``i`` (``blocks.{i}.hook_resid_post``): ``n_layers + 1`` streams.
Files, probes and predictions are keyed by the hook name; metrics and plots show the
layer number beside it. Both directions are defined here only, and so is ``capture``,
the one forward pass that reads hooks by these names (the model stage's check of a new
model, the activations stage's extraction and every mechanism stage).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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


def capture(
    bridge: Any,
    tokens: torch.Tensor,
    names: list[str],
    edits: Sequence[tuple[str, Any]] = (),
    home: torch.device | str | None = None,
    strict: bool = True,
) -> dict[str, torch.Tensor]:
    """The activation at each hook of ``names`` (``[batch, pos, ...]``; patterns ``[batch,
    head, q, k]``), after ``edits`` (hooks that change activations) have run.

    The hook that completes the set raises TransformerLens's ``StopAtLayerException``,
    which the bridge's forward catches: nothing after the last hook is computed (no
    unembedding). ``home``: move every activation there (the mechanism stages use the
    embeddings' device, where a split model's stacked weights live); ``None`` leaves each
    on its block's device (the extraction copies each to the host itself). ``strict``:
    fail when a hook does not fire (otherwise return those that did: a layout probe).
    """
    import torch
    from transformer_lens.model_bridge.exceptions import StopAtLayerException

    captured: dict[str, torch.Tensor] = {}
    wanted = set(names)

    def saver(name: str) -> Any:
        # hook.name is the bridge's canonical name (``blocks.0.hook_in``), so key by the
        # alias we asked for
        def save(tensor: torch.Tensor, hook: Any) -> torch.Tensor:
            captured[name] = tensor.detach() if home is None else tensor.detach().to(home)
            if len(captured) == len(wanted):
                raise StopAtLayerException(tensor)
            return tensor

        return save

    hooks = [*edits, *((n, saver(n)) for n in wanted)]
    with torch.inference_mode(), bridge.hooks(fwd_hooks=hooks):
        bridge(tokens.to(bridge.cfg.device), return_type=None)
    missing = wanted - set(captured)
    if missing and strict:
        raise KeyError(f"hook {sorted(missing)[0]!r} did not fire in the forward pass")
    return captured
