"""Params of the ``report`` stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from emergent_pos.config import ParamError


@dataclass(frozen=True)
class ReportConfig:
    layers: list[int] | Literal["all"] = "all"
    """Layers that get the seed's key plot and a confusion matrix (0 = embeddings)."""

    def validate(self, section: str) -> None:
        if isinstance(self.layers, list):
            if not self.layers:
                raise ParamError(f"{section}.layers", self.layers, "give 'all' or a non-empty list of layers")
            for i, layer in enumerate(self.layers):
                if layer < 0:
                    raise ParamError(f"{section}.layers[{i}]", layer, "must be >= 0")
