"""Params of the ``dictionary`` and ``prompts`` stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from emergent_pos.config import ParamError, positive
from emergent_pos.dataset.words import SEED_PREFIX


@dataclass(frozen=True)
class DictionaryConfig:
    source: str = "wordfreq"
    """``wordfreq`` (its top English words, offline) or the path of a word list, one per line."""
    n_words: int = 10000
    """How many source words to consider (most frequent first)."""
    max_tokens: int = 3
    """Keep words of 1..max_tokens tokens (as ``" " + word``)."""
    train_fraction: float = 0.8

    def validate(self, section: str) -> None:
        positive(section, "n_words", self.n_words, 2)
        positive(section, "max_tokens", self.max_tokens)
        if not 0 < self.train_fraction < 1:
            raise ParamError(f"{section}.train_fraction", self.train_fraction, "must be in (0, 1)")
        if not self.source.strip():
            raise ParamError(f"{section}.source", self.source, "give 'wordfreq' or a word-list path")


@dataclass(frozen=True)
class PromptsConfig:
    prefix: str = SEED_PREFIX
    n_words: int = 7
    n_train: int = 1430
    """Train prompts (1430 x 7 words = the seed's ~10,000 probe training points)."""
    n_val: int = 2560
    prepend_bos: bool = True
    """Prepend the tokenizer's BOS token, as TransformerLens does by default."""
    eval_prefixes: list[str] = field(default_factory=list)
    """Extra validation prefixes ("" = none): same words, probes trained on ``prefix``."""
    same_length_control: bool = True
    """Also evaluate on a prefix of other words with exactly as many tokens as ``prefix`` (same
    absolute positions, other text): does the probe transfer when only the text changes?"""
    eval_n_words: list[int] = field(default_factory=lambda: [5, 9])
    """Validation prompts with other word counts, scored by the probes trained on ``n_words``:
    does the probe count words from the start, or count down to the expected end?"""
    n_heldout: int = 500
    """Held-out prompts built from training words: where the word-type control is scored."""
    words: Literal["dictionary", "random_tokens"] = "dictionary"
    """``random_tokens``: non-words of random tokens, boundaries marked only by a leading space."""

    def validate(self, section: str) -> None:
        positive(section, "n_words", self.n_words)
        positive(section, "n_train", self.n_train)
        positive(section, "n_val", self.n_val)
        positive(section, "n_heldout", self.n_heldout)
        for i, m in enumerate(self.eval_n_words):
            positive(section, f"eval_n_words[{i}]", m)
        if len(set(self.eval_n_words) | {self.n_words}) != len(self.eval_n_words) + 1:
            raise ParamError(
                f"{section}.eval_n_words", self.eval_n_words, "lengths must differ from each other and from n_words"
            )
        for key, prefix in [("prefix", self.prefix)] + [
            (f"eval_prefixes[{i}]", p) for i, p in enumerate(self.eval_prefixes)
        ]:
            if not prefix and not self.prepend_bos:
                raise ParamError(f"{section}.{key}", prefix, "an empty prefix needs prompts.prepend_bos: true")
        if len(set(self.eval_prefixes) | {self.prefix}) != len(self.eval_prefixes) + 1:
            raise ParamError(
                f"{section}.eval_prefixes",
                self.eval_prefixes,
                "prefixes must differ from each other and from prompts.prefix",
            )
