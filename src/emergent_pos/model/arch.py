"""Can TransformerLens 4 run this model, with the hooks the pipeline reads? Asked before work.

The ``check`` stage asks from the config alone (before DVC removes ``data/model``), the
``model`` stage again before loading weights, and once more by booting the bridge on the
saved directory before it is moved into place: a model the later stages cannot read
never looks like a finished ``data/model``.
"""

from __future__ import annotations

import difflib
from importlib.metadata import version
from typing import Any

from emergent_pos.errors import UserError
from emergent_pos.model.hooks import capture, residual_hooks

# Attention hooks the heads stage scores; a model without them (a state-space model) runs
# every other stage on its blocks' outputs (analysis/components.py), and `heads` says it
# does not apply. The card's ``attention`` records which.
ATTENTION_HOOKS = ("blocks.0.attn.hook_pattern", "blocks.0.attn.hook_z")


class UnsupportedModel(UserError, RuntimeError):
    """TransformerLens cannot run the model, or lacks a hook the pipeline reads."""


def transformer_lens_version() -> str:
    return version("transformer-lens")


def supported_architectures() -> list[str]:
    """Hugging Face architecture names TransformerLens 4 boots (``config.architectures``)."""
    from transformer_lens.factories.architecture_adapter_factory import SUPPORTED_ARCHITECTURES

    return sorted(SUPPORTED_ARCHITECTURES)


def architecture_of(config: Any, name: str) -> str:
    """The architecture TransformerLens would pick for ``config``; one line if it picks none."""
    from transformer_lens.model_bridge.sources._hf_format import determine_architecture_from_hf_config

    try:
        return determine_architecture_from_hf_config(config)
    except ValueError:
        pass
    claimed = list(getattr(config, "architectures", None) or []) or [type(config).__name__]
    close = difflib.get_close_matches(claimed[0], supported_architectures(), n=3, cutoff=0.5)
    raise UnsupportedModel(
        f"model.name={name!r} is a {claimed[0]} (model_type {getattr(config, 'model_type', '?')!r}), which "
        f"TransformerLens {transformer_lens_version()} cannot run"
        + (f" (closest supported: {', '.join(close)})" if close else "")
        + f"; `emergent-pos architectures` lists the {len(supported_architectures())} it supports"
    )


def check_bridge(bridge: Any, n_layers: int, name: str) -> list[str]:
    """Fail in one line unless every residual-stream hook exists and fires as ``[batch, pos, d]``.

    Returns which of the mechanism stages' hooks the model lacks (none for a transformer).
    """
    import torch

    hooks = residual_hooks(n_layers)
    missing = [h for h in hooks if h not in bridge.hook_dict]
    if missing:
        raise UnsupportedModel(
            f"model.name={name!r}: TransformerLens's bridge for {bridge.cfg.architecture} has no hook {missing[0]!r}, "
            "which the activations stage reads"
        )
    tokens = torch.zeros((1, 3), dtype=torch.long, device=bridge.cfg.device)
    try:
        shapes = {h: tuple(a.shape) for h, a in capture(bridge, tokens, hooks).items()}
    except (MemoryError, torch.OutOfMemoryError):
        raise
    except Exception as err:  # TransformerLens's own failure on this architecture, whatever its type
        raise UnsupportedModel(
            f"model.name={name!r}: a test forward pass through TransformerLens's bridge for "
            f"{bridge.cfg.architecture} failed: {type(err).__name__}: {' '.join(str(err).split())[:300]}"
        ) from err
    silent = [h for h in hooks if len(shapes[h]) != 3 or shapes[h][:2] != (1, 3)]
    if silent:
        raise UnsupportedModel(
            f"model.name={name!r}: hook {silent[0]!r} of {bridge.cfg.architecture} did not give a "
            "[batch, pos, d_model] activation in a test forward pass"
        )
    return [h for h in ATTENTION_HOOKS if h not in bridge.hook_dict]
