"""The raw text material: English words (wordfreq or a word list) and the seed's prefix.

Shared by the organism's training corpus and the dictionary stage, so it depends on
nothing else in the package.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from emergent_pos.config import ParamError

logger = logging.getLogger(__name__)

SEED_PREFIX = (
    "The United States Declaration of Independence received its first formal public reading, in Philadelphia.\nWhen"
)
WORD_RE = re.compile(r"[a-z]+")


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
