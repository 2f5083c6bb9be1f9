"""Params of the ``model`` stage: which model (``model``) and the organism's shape (``toy``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from emergent_pos.config import ParamError, positive


@dataclass(frozen=True)
class ModelConfig:
    name: str = "toy"
    """``toy`` (the embedded organism), a Hugging Face model name, or a local directory."""
    init: Literal["pretrained", "random"] = "pretrained"
    """``random`` keeps architecture and tokenizer and re-initialises the weights (control)."""
    trust_remote_code: bool = False
    """Hub models with custom code run it only when this is on."""
    revision: str = "main"
    """Which version: a hub branch, tag or commit (Pythia's ``step1000``); for the toy
    organism ``stepN``, its weights after N of its ``toy.steps`` training steps (``main``:
    all of them). Shorter runs are exact prefixes of the full one."""

    def validate(self, section: str) -> None:
        if not self.name.strip():
            raise ParamError(f"{section}.name", self.name, "give 'toy', a Hugging Face name or a directory")
        if not self.revision.strip():
            raise ParamError(f"{section}.revision", self.revision, "give main, a branch, tag or commit, or stepN")

    def toy_steps(self, toy: ToyConfig) -> int:
        """Training steps of the toy organism this revision asks for (``main``: ``toy.steps``)."""
        if self.revision == "main":
            return toy.steps
        if self.init == "random":
            raise ParamError("model.revision", self.revision, "a random-init organism has no training steps: use main")
        match = TOY_REVISION.fullmatch(self.revision)
        if not match or int(match.group(1)) > toy.steps:
            raise ParamError(
                "model.revision",
                self.revision,
                f"the toy organism's revisions are main and step0..step{toy.steps} (toy.steps={toy.steps})",
            )
        return int(match.group(1))


TOY_REVISION = re.compile(r"step(\d+)")


@dataclass(frozen=True)
class ToyConfig:
    """Shape and training budget of the embedded model organism (see organism.py)."""

    arch: Literal["gpt2", "llama"] = "gpt2"
    """``gpt2`` (learned absolute positions added to the stream) or ``llama`` (rotary positions, RMSNorm, SwiGLU)."""
    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    n_positions: int = 256
    vocab_size: int = 2000
    n_source_words: int = 20000
    max_word_tokens: int = 4
    prompt_words: int = 7
    """Units of the block that follows the opening unannounced (``corpus: fixed``), as in the probe prompts."""
    min_words: int = 3
    max_words: int = 9
    """Announced counts of later blocks: uniform in ``min_words..max_words``."""
    min_width: int = 20
    max_width: int = 50
    """Widths of wrapped text, in characters: uniform in ``min_width..max_width``."""
    opener_words: int = 16
    """Openings of random words hold 1..opener_words of them."""
    seed_opening: float = 0.2
    """Share of sequences that open with the seed's prefix (the rest open with random words or
    nothing: counting must work after any text)."""
    mix: list[float] = field(default_factory=lambda: [0.55, 0.05, 0.05, 0.05, 0.3])
    """Share of each block kind in the corpus: words, sentences, items, lines, chars (``corpus.py``)."""
    seq_len: int = 96
    batch_size: int = 64
    steps: int = 800
    lr: float = 5e-3
    corpus: Literal["fixed", "variable"] = "fixed"
    """How many units follow the opening unannounced: ``fixed`` = always ``prompt_words`` (then
    a unit's index and the units left before the end are the same number there);
    ``variable`` = uniform in ``min_words..max_words``, so only a count from the anchor,
    not a countdown, fits every sequence."""

    def validate(self, section: str) -> None:
        for name in (
            "n_layers",
            "d_model",
            "n_heads",
            "n_positions",
            "max_word_tokens",
            "prompt_words",
            "min_words",
            "min_width",
            "opener_words",
            "seq_len",
            "batch_size",
            "steps",
        ):
            positive(section, name, getattr(self, name))
        positive(section, "vocab_size", self.vocab_size, 300)
        positive(section, "n_source_words", self.n_source_words, 100)
        if self.d_model % self.n_heads:
            raise ParamError(f"{section}.n_heads", self.n_heads, f"must divide toy.d_model={self.d_model}")
        if not self.min_words <= self.max_words <= 9:
            raise ParamError(
                f"{section}.max_words", self.max_words, f"must be in toy.min_words..9 (min_words={self.min_words})"
            )
        if not 2 <= self.min_width <= self.max_width <= 99:
            raise ParamError(
                f"{section}.max_width", self.max_width, f"must be in toy.min_width..99 (min_width={self.min_width})"
            )
        if len(self.mix) != 5 or min(self.mix) < 0 or sum(self.mix) <= 0:
            raise ParamError(f"{section}.mix", self.mix, "give 5 shares >= 0 (words, sentences, items, lines, chars)")
        if self.seq_len > self.n_positions:
            raise ParamError(f"{section}.seq_len", self.seq_len, f"must be <= toy.n_positions={self.n_positions}")
        if not 0 <= self.seed_opening <= 1:
            raise ParamError(f"{section}.seed_opening", self.seed_opening, "must be in [0, 1]")
        if not 0 < self.lr < 1:
            raise ParamError(f"{section}.lr", self.lr, "must be in (0, 1)")
