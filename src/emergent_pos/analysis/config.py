"""Params of the mechanism stages: ``heads``, ``attribution``, ``interventions``, ``tokens``.

Every stage works on the first ``n_prompts`` validation prompts of the main evaluation
set (the training prefix at the training word count), so GPT-2-sized runs stay
practical by lowering one number; layers and components are chosen here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from emergent_pos.config import ParamError, positive
from emergent_pos.dataset.words import SEED_PREFIX


def _check_layers(section: str, name: str, value: object) -> None:
    if isinstance(value, list):
        if not value:
            raise ParamError(f"{section}.{name}", value, "give 'best', 'all' or a non-empty list of layers")
        for i, layer in enumerate(value):
            positive(section, f"{name}[{i}]", layer, 0)


def chosen_layers(key: str, value: list[int] | str, n_layers: int, model: str) -> list[int]:
    """``all`` or a list of probe layers, checked against the model (0 = embeddings)."""
    layers = list(range(n_layers + 1)) if value == "all" else list(value)
    if max(layers) > n_layers:
        raise ParamError(key, value, f"layers are 0..{n_layers} for {model}")
    return layers


@dataclass(frozen=True)
class HeadsConfig:
    n_prompts: int = 512
    """Validation prompts whose attention patterns are scored."""
    top_k: int = 4
    """Heads whose patterns are drawn (largest excess over the relative-position null)."""
    n_examples: int = 2
    """Prompts drawn for each of those heads."""

    def validate(self, section: str) -> None:
        positive(section, "n_prompts", self.n_prompts, 2)
        positive(section, "top_k", self.top_k)
        positive(section, "n_examples", self.n_examples)


@dataclass(frozen=True)
class AttributionConfig:
    n_prompts: int = 512
    """Validation prompts whose probed tokens are attributed."""
    layers: list[int] | Literal["all"] = "all"
    """Probe layers split into components (0 = embeddings)."""
    top_k: int = 5
    """Components per layer listed in data/attribution/attribution.json."""

    def validate(self, section: str) -> None:
        positive(section, "n_prompts", self.n_prompts, 2)
        positive(section, "top_k", self.top_k)
        _check_layers(section, "layers", self.layers)


@dataclass(frozen=True)
class InterventionsConfig:
    layers: list[int] | Literal["best"] = "best"
    """Probe layers whose subspace is projected out, resampled and steered along (``best``:
    the layer of highest validation accuracy)."""
    n_prompts: int = 512
    """Validation prompts run under every intervention."""
    n_random: int = 20
    """Random subspaces (and steering directions) of the same rank: the control's spread, reported
    with 95% intervals of its mean and sd (5 draws left the sd, and so "random sds above",
    uncertain by a factor of two)."""
    text_file: str = "texts/counting.txt"
    """Ordinary text whose next-token loss is measured too under each subspace intervention
    (the write-up's "resample ablating the probe directions on general text"; ``""``: none)."""
    components: int | Literal["all"] = "all"
    """Heads and MLPs ablated: ``all``, or the top-k by attribution to the best layer's probe."""
    n_pairs: int = 128
    """Prompt pairs for activation patching."""
    patch_tokens: int = 6
    """Word tokens of each patching pair (the same count, split into words differently)."""
    patch_layer: int | Literal["best"] = "best"
    """The probe layer whose logits the patching metric reads."""

    def validate(self, section: str) -> None:
        _check_layers(section, "layers", self.layers)
        positive(section, "n_prompts", self.n_prompts, 2)
        positive(section, "n_random", self.n_random, 2)
        positive(section, "n_pairs", self.n_pairs, 2)
        positive(section, "patch_tokens", self.patch_tokens, 2)
        if isinstance(self.components, int):
            positive(section, "components", self.components)
        if isinstance(self.patch_layer, int):
            positive(section, "patch_layer", self.patch_layer)


DEFAULT_TEXTS = [
    SEED_PREFIX + " green house river table shoe light paper. When cold water runs fast",
    "\nWhen the rain stopped, the children ran outside and played until dark",
    "\nWhen 1776 and 2026 meet, incomprehensibilities and counterrevolutionaries multiply",
]


@dataclass(frozen=True)
class TokensConfig:
    texts: list[str] = field(default_factory=lambda: list(DEFAULT_TEXTS))
    """Texts whose every token gets each layer's predicted label (the HTML page and PNGs)."""
    text_file: str = "texts/counting.txt"
    """Real text, paragraphs split at blank lines: the probes are scored on the labels it defines
    (``data/tokens/text.json``; ``""``: none). A file outside ``texts/`` is read but not tracked
    by DVC: add it to the stage's deps in dvc.yaml."""
    layers: list[int] | Literal["all"] = "all"
    """Layers shown (0 = embeddings)."""

    def validate(self, section: str) -> None:
        _check_layers(section, "layers", self.layers)
        for i, text in enumerate(self.texts):
            if not text.strip():
                raise ParamError(f"{section}.texts[{i}]", text, "texts must not be empty")
