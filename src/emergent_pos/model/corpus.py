"""The organism's training corpus: sequences in which the next token needs a count, in every scheme.

A sequence is BOS, an opening, then blocks until ``seq_len`` tokens. Each block counts
one kind of unit from an anchor, and ends where the count says:

* ``words``: ``"\\nWhen"`` then ``k`` words (each with a leading space, token length
  uniform in ``1..max_word_tokens``) and a full stop; a third of them go on as a
  paragraph, ``" When"`` + ``k`` words + ``"."`` again (the count restarts at the
  full stop + capital anchor);
* ``sentences``: ``"\\nWhen"`` then ``k`` sentences of 1..3 words, each closed by a full
  stop; the paragraph ends after the ``k``-th;
* ``items``: ``"\\nWhen:"`` then ``k`` items of 1..3 words, a comma after each but the
  last, a full stop after the last (is the next token ``","`` or ``"."``?);
* ``lines``: ``"\\nWhen\\n"`` then ``k`` lines of 1..3 words, a line's first word without a
  space, each line ended by a newline;
* ``chars``: ``"\\nWhen\\n"`` then words wrapped at a width ``w`` (greedy, as ``textwrap``):
  is the next token a newline? needs the characters since the last one.

Each block's kind is drawn with the shares ``toy.mix``. The first block follows the
opening directly and is unannounced: ``k`` is ``prompt_words`` (``corpus: fixed``) or
drawn (``variable``), ``w`` uniform in ``min_width..max_width``. Later blocks announce
``k`` (uniform in ``min_words..max_words``) or ``w`` in a header, ``"\\n5:"``,
``"\\n5."``, ``"\\n5,"``, ``"\\n5|"`` or ``"\\n35~"``, before their anchor.
Openings vary so that counting must work after any context: the seed's prefix (its
``"\\nWhen"`` then opens the first block), a sentence of 1..``opener_words`` random
words, or nothing. Sequences are short, so anchors fall at many absolute positions
and position alone cannot place the ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from emergent_pos.config import ParamError
from emergent_pos.model.config import ToyConfig

BOS = "<|endoftext|>"
ANCHOR = "\nWhen"
KINDS = ("words", "sentences", "items", "lines", "chars")
HEADER = {"words": ":", "sentences": ".", "items": ",", "lines": "|", "chars": "~"}
"""The symbol after a header's number: which unit the number counts (``chars``: the width)."""


def fixed_texts(prefix: str, cfg: ToyConfig) -> list[str]:
    """Texts the corpus repeats: the tokenizer merges them like any frequent text."""
    numbers = [*range(cfg.min_words, cfg.max_words + 1), *range(cfg.min_width, cfg.max_width + 1)]
    headers = [f"\n{k}{s}" for k in numbers for s in HEADER.values()]
    return [prefix, ANCHOR, " When", ".", ",", ":", "\n", *headers]


@dataclass(frozen=True)
class Corpus:
    """Pre-tokenized pieces from which training sequences are sampled."""

    buckets: list[list[tuple[list[int], list[int], int]]]  # [n - 1]: (" word" ids, line-start ids, characters)
    prefix: list[int]  # BOS + the seed's prefix (ends with the anchor)
    pieces: dict[str, list[int]]  # fixed texts: anchor, " When", ".", ",", ":", "\n"
    headers: dict[str, list[int]]  # "\n5:" ... -> ids

    @classmethod
    def build(cls, tok, words: list[str], prefix: str, cfg: ToyConfig) -> Corpus:
        def enc(text: str) -> list[int]:
            return tok(text, add_special_tokens=False)["input_ids"]

        buckets: list[list[tuple[list[int], list[int], int]]] = [[] for _ in range(cfg.max_word_tokens)]
        spaced = tok([" " + w for w in words], add_special_tokens=False)["input_ids"]
        bare = tok(words, add_special_tokens=False)["input_ids"]
        for word, ids, start in zip(words, spaced, bare, strict=True):
            if 1 <= len(ids) <= cfg.max_word_tokens:
                buckets[len(ids) - 1].append((ids, start, len(word)))
        empty = [n + 1 for n, b in enumerate(buckets) if not b]
        if empty:
            raise ParamError(
                "toy.max_word_tokens",
                cfg.max_word_tokens,
                f"no source word has {empty} tokens; raise toy.n_source_words or lower toy.vocab_size",
            )
        pieces = {t: enc(t) for t in (ANCHOR, " When", ".", ",", ":", "\n")}
        headers = {t: enc(t) for t in fixed_texts(prefix, cfg) if t.startswith("\n") and t[-1] in HEADER.values()}
        return cls(buckets, [tok.bos_token_id, *enc(prefix)], pieces, headers)

    def word(self, rng: np.random.Generator) -> tuple[list[int], list[int], int]:
        """A word: token length uniform over the buckets, then a word of that length."""
        bucket = self.buckets[int(rng.integers(0, len(self.buckets)))]
        return bucket[int(rng.integers(len(bucket)))]

    def words(self, rng: np.random.Generator, k: int) -> list[int]:
        return [i for _ in range(k) for i in self.word(rng)[0]]

    def block(self, rng: np.random.Generator, kind: str, k: int, cfg: ToyConfig) -> list[int]:
        """One block's body after its anchor word ``When``: ``k`` units (``chars``: width ``k``)."""
        p = self.pieces
        if kind == "words":
            out = [*self.words(rng, k), *p["."]]
            while rng.random() < 1 / 3:  # the paragraph goes on: the count restarts after ". When"
                out += [*p[" When"], *self.words(rng, k), *p["."]]
            return out
        if kind in ("sentences", "items"):
            out = list(p[":"]) if kind == "items" else []
            for i in range(k):
                out += self.words(rng, int(rng.integers(1, 4)))
                out += p["."] if kind == "sentences" or i == k - 1 else p[","]
            return out
        if kind == "lines":
            out = list(p["\n"])
            for _ in range(k):
                n = int(rng.integers(1, 4))
                out += [*self.word(rng)[1], *self.words(rng, n - 1), *p["\n"]]
            return out
        # chars: words wrapped at width k, two to four full lines
        out, used = list(p["\n"]), 0
        lines = int(rng.integers(2, 5))
        while lines:
            spaced, start, chars = self.word(rng)
            if used and used + 1 + chars <= k:
                out += spaced
                used += 1 + chars
                continue
            if used:
                out += p["\n"]
                lines -= 1
                if not lines:
                    break
            out += start
            used = chars
        return out

    def sequence(self, rng: np.random.Generator, cfg: ToyConfig) -> list[int]:
        """One training sequence of exactly ``cfg.seq_len`` tokens (see the module's docstring)."""
        opening = rng.random()
        if opening < cfg.seed_opening:
            ids = list(self.prefix)  # its last token is the anchor word "When"
        else:
            ids = [self.prefix[0]]
            if opening < cfg.seed_opening + (1 - cfg.seed_opening) * 0.8:
                ids += [*self.words(rng, int(rng.integers(1, cfg.opener_words + 1))), *self.pieces["."]]
            ids += self.pieces[ANCHOR]
        share = np.asarray(cfg.mix, dtype=float) / sum(cfg.mix)
        kind = KINDS[int(rng.choice(len(KINDS), p=share))]
        ids += self.block(rng, kind, self.unannounced(rng, kind, cfg), cfg)
        while len(ids) < cfg.seq_len:
            kind = KINDS[int(rng.choice(len(KINDS), p=share))]
            lo, hi = (cfg.min_width, cfg.max_width) if kind == "chars" else (cfg.min_words, cfg.max_words)
            k = int(rng.integers(lo, hi + 1))
            ids += [*self.headers[f"\n{k}{HEADER[kind]}"], *self.pieces[ANCHOR], *self.block(rng, kind, k, cfg)]
        return ids[: cfg.seq_len]

    @staticmethod
    def unannounced(rng: np.random.Generator, kind: str, cfg: ToyConfig) -> int:
        """The count (or width) of the block after the opening, which no header announces."""
        if kind == "chars":
            return int(rng.integers(cfg.min_width, cfg.max_width + 1))
        return cfg.prompt_words if cfg.corpus == "fixed" else int(rng.integers(cfg.min_words, cfg.max_words + 1))

    def batch(self, rng: np.random.Generator, cfg: ToyConfig) -> torch.Tensor:
        return torch.tensor([self.sequence(rng, cfg) for _ in range(cfg.batch_size)], dtype=torch.long)
