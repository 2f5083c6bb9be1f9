"""Residual-stream hook names and layer numbers: one mapping, both directions."""

from __future__ import annotations

import pytest

from emergent_pos.model.hooks import layer_of, residual_hooks


def test_layer_numbers_round_trip() -> None:
    hooks = residual_hooks(3)
    assert hooks == ["blocks.0.hook_resid_pre", *(f"blocks.{i}.hook_resid_post" for i in range(3))]
    assert [layer_of(h) for h in hooks] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="not a residual-stream hook"):
        layer_of("blocks.0.attn.hook_z")
