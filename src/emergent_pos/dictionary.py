"""Word lists -> token lengths under the model's tokenizer -> a seeded train/val word split.

Validation prompts use only validation words, so a probe is always scored on words it
never saw in training.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from transformers import PreTrainedTokenizerBase

from emergent_pos.config import DictionaryConfig, ParamError

logger = logging.getLogger(__name__)

WORD_RE = re.compile(r"[a-z]+")
# Words are tokenized after this context so that a tokenizer that marks word starts
# (GPT-2's "Ġ", SentencePiece's "▁") splits them exactly as it does inside a prompt.
CONTEXT = "When"


@dataclass(frozen=True)
class CleanStats:
    """What cleaning a raw word list removed, so a user sees why words went missing."""

    lines: int
    empty: int
    not_lowercase_alpha: int
    duplicates: int
    kept: int


def clean_words(lines: list[str]) -> tuple[list[str], CleanStats]:
    """Keep lowercase alphabetic words, first occurrence only, in their given order."""
    seen: set[str] = set()
    kept: list[str] = []
    empty = bad = dup = 0
    for line in lines:
        word = line.strip()
        if not word:
            empty += 1
        elif not WORD_RE.fullmatch(word):
            bad += 1
        elif word in seen:
            dup += 1
        else:
            seen.add(word)
            kept.append(word)
    return kept, CleanStats(len(lines), empty, bad, dup, len(kept))


def source_words(source: str, n_words: int, key: str = "dictionary.source") -> tuple[list[str], list[float]]:
    """The ``n_words`` most frequent clean words of a source, with their frequencies.

    ``wordfreq`` ships its lists offline; a file is one word per line, most frequent first
    (frequencies are then taken as Zipfian, 1/rank).
    """
    if source == "wordfreq":
        import wordfreq

        raw = wordfreq.top_n_list("en", int(n_words * 1.6) + 100)
        words, stats = clean_words(raw)
        words = words[:n_words]
        return words, [wordfreq.word_frequency(w, "en") for w in words]
    path = Path(source)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ParamError(key, source, f"cannot read word list: {type(err).__name__}: {err}") from err
    words, stats = clean_words(lines)
    logger.info(
        "word list %s: %d lines, dropped %d empty, %d not lowercase a-z, %d duplicates; %d kept",
        path,
        stats.lines,
        stats.empty,
        stats.not_lowercase_alpha,
        stats.duplicates,
        stats.kept,
    )
    if not words:
        raise ParamError(key, source, f"no usable words ({stats})")
    words = words[:n_words]
    return words, [1.0 / (rank + 1) for rank in range(len(words))]


def tokenize_words(words: list[str], tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    """Token ids of each word as it appears in a prompt: after a space, mid-sentence."""
    ctx = tokenizer(CONTEXT, add_special_tokens=False)["input_ids"]
    full = tokenizer([f"{CONTEXT} {w}" for w in words], add_special_tokens=False)["input_ids"]
    out = []
    for word, ids in zip(words, full, strict=True):
        if ids[: len(ctx)] != ctx:
            raise ValueError(f"tokenizer merges {word!r} into the preceding context; cannot align words")
        out.append(ids[len(ctx) :])
    return out


def build_dictionary(
    words: list[str], tokenizer: PreTrainedTokenizerBase, cfg: DictionaryConfig, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tokenize, keep words of 1..max_tokens tokens, split by a seeded permutation.

    Each token-length bucket is split separately, so both splits hold every length in the
    same proportions (the prompt recipe draws the length first, then a word).
    """
    ids = tokenize_words(words, tokenizer)
    df = pd.DataFrame({"word": words, "token_ids": ids, "n_tokens": [len(i) for i in ids]})
    df = df[df.n_tokens.between(1, cfg.max_tokens)].reset_index(drop=True)
    rng = np.random.default_rng([seed, 0xD1C7])
    is_train = np.zeros(len(df), dtype=bool)
    for _, idx in df.groupby("n_tokens").indices.items():
        order = rng.permutation(idx)
        is_train[order[: int(round(cfg.train_fraction * len(order)))]] = True
    train, val = df[is_train].reset_index(drop=True), df[~is_train].reset_index(drop=True)
    for name, part in (("train", train), ("val", val)):
        counts = part.n_tokens.value_counts()
        empty = [n for n in range(1, cfg.max_tokens + 1) if counts.get(n, 0) == 0]
        if empty:
            raise ParamError(
                "dictionary.n_words",
                cfg.n_words,
                f"the {name} split has no words of {empty} tokens (of {len(words)} source words); "
                "use more words or a lower dictionary.max_tokens",
            )
    return train, val


def bucket_counts(df: pd.DataFrame, max_tokens: int) -> list[int]:
    counts = df.n_tokens.value_counts()
    return [int(counts.get(n, 0)) for n in range(1, max_tokens + 1)]
