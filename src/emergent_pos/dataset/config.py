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


Scheme = Literal["word_in_sentence", "sentence_in_paragraph", "item_in_list", "line_in_text", "char_in_line"]


@dataclass(frozen=True)
class PromptsConfig:
    scheme: Scheme = "word_in_sentence"
    """The reference scheme: which unit is counted, from which anchor (``dataset/schemes/``)."""
    prefix: str = SEED_PREFIX
    n_units: int = 7
    """Units per prompt: words of the sentence, sentences, list items or lines."""
    unit_words: list[int] = field(default_factory=lambda: [1, 3])
    """Words per sentence, list item or line: uniform in this inclusive range."""
    line_width: list[int] = field(default_factory=lambda: [20, 50])
    """Characters per line of ``char_in_line`` text: a width drawn per prompt, uniform in this range."""
    n_train: int = 1430
    """Train prompts (1430 x 7 words = the seed's ~10,000 probe training points), split evenly
    over the training prefixes."""
    n_val: int = 2560
    prepend_bos: bool = True
    """Prepend the tokenizer's BOS token, as TransformerLens does by default."""
    train_prefixes: list[str] = field(default_factory=list)
    """More prefixes the probes are trained on beside ``prefix`` (the training prompts are split
    evenly over them): is there a direction that reads the count after any context?"""
    eval_prefixes: list[str] = field(default_factory=list)
    """Held-out validation prefixes: same words, probes trained on ``prefix`` (and ``train_prefixes``)."""
    same_length_control: bool = True
    """Also evaluate on a prefix of other words with exactly as many tokens as ``prefix`` (same
    absolute positions, other text): does the probe transfer when only the text changes?"""
    eval_n_units: list[int] = field(default_factory=lambda: [5, 9])
    """Validation prompts with other unit counts, scored by the probes trained on ``n_units``:
    does the probe count units from the anchor, or count down to the expected end?"""
    n_heldout: int = 500
    """Held-out prompts built from training words: where the word-type control is scored."""
    words: Literal["dictionary", "random_tokens"] = "dictionary"
    """``random_tokens``: non-words of random tokens, boundaries marked only by a leading space."""

    def validate(self, section: str) -> None:
        positive(section, "n_units", self.n_units)
        positive(section, "n_train", self.n_train)
        positive(section, "n_val", self.n_val)
        positive(section, "n_heldout", self.n_heldout)
        for name in ("unit_words", "line_width"):
            pair = getattr(self, name)
            if len(pair) != 2 or not 1 <= pair[0] <= pair[1]:
                raise ParamError(f"{section}.{name}", pair, "give [low, high] with 1 <= low <= high")
        for i, m in enumerate(self.eval_n_units):
            positive(section, f"eval_n_units[{i}]", m)
        if len(set(self.eval_n_units) | {self.n_units}) != len(self.eval_n_units) + 1:
            raise ParamError(
                f"{section}.eval_n_units", self.eval_n_units, "counts must differ from each other and from n_units"
            )
        keys = [("prefix", self.prefix)] + [(f"train_prefixes[{i}]", p) for i, p in enumerate(self.train_prefixes)]
        keys += [(f"eval_prefixes[{i}]", p) for i, p in enumerate(self.eval_prefixes)]
        for key, prefix in keys:
            if not prefix and not self.prepend_bos:
                raise ParamError(f"{section}.{key}", prefix, "an empty prefix needs prompts.prepend_bos: true")
        texts = [p for _, p in keys]
        if len(set(texts)) != len(texts):
            dup = next(k for k, p in keys if texts.count(p) > 1 and k != "prefix")
            raise ParamError(
                f"{section}.{dup}", dict(keys)[dup], "prefixes must differ from each other and from prompts.prefix"
            )
        n_prefixes = 1 + len(self.train_prefixes)
        if self.n_train < n_prefixes:
            raise ParamError(
                f"{section}.n_train", self.n_train, f"must be >= {n_prefixes}: one prompt per training prefix"
            )
