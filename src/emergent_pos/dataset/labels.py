"""What the probes predict and which tokens they read: defined here and nowhere else.

The label is the index (0..n_words-1) of the word a token belongs to, counted from the
start of the prompt's word list; a probe reads the ``last`` token of each word (as in
the seed), its ``first`` token, or ``all`` of them. A new counting scheme or token
choice is a change to this module alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

LABEL = "word_index"
"""The prompts-table column the probes predict, and its name in predictions and metrics."""

TokenChoice = Literal["last", "first", "all"]


@dataclass(frozen=True)
class Points:
    """The probed tokens of one split: table rows, labels and what baselines may see."""

    rows: np.ndarray  # sorted row numbers into the prompts table (= activation rows)
    label: np.ndarray  # the word index
    position: np.ndarray  # absolute token position in the prompt
    prompt_id: np.ndarray
    starts_word: np.ndarray  # the token begins with a space (first token of its word)
    prefix_id: np.ndarray  # 0 = prompts.prefix; others are evaluation prefixes
    n_words: np.ndarray  # words in the point's prompt (prompts.n_words, or an evaluation length)
    word: np.ndarray  # the word type (what the word-type control labels)

    @classmethod
    def select(cls, prompts: pd.DataFrame, token: TokenChoice) -> Points:
        in_word = prompts[LABEL].to_numpy() >= 0
        flag = {"last": prompts.is_word_end.to_numpy(), "first": prompts.is_word_start.to_numpy(), "all": in_word}
        sel = np.flatnonzero(flag[token] & in_word)
        return cls(
            rows=sel,
            label=prompts[LABEL].to_numpy()[sel],
            position=prompts.position.to_numpy()[sel],
            prompt_id=prompts.prompt_id.to_numpy()[sel],
            starts_word=prompts.is_word_start.to_numpy()[sel],
            prefix_id=prompts.prefix_id.to_numpy()[sel],
            n_words=prompts.n_words.to_numpy()[sel],
            word=prompts.word.to_numpy()[sel],
        )

    def take(self, idx: np.ndarray) -> Points:
        return Points(**{f: getattr(self, f)[idx] for f in self.__dataclass_fields__})

    def __len__(self) -> int:
        return len(self.rows)

    def main(self, n_words: int) -> np.ndarray:
        """Mask of the main evaluation set: the training prefix at the training word count."""
        return (self.prefix_id == 0) & (self.n_words == n_words)


def position_balanced(position: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a subset in which, at every absolute position where two or more
    labels occur, each of them occurs equally often (subsampled to the rarest).

    Positions that only one label reaches are left out: position alone answers them.
    """
    keep = []
    for p in np.unique(position):
        at = np.flatnonzero(position == p)
        classes, counts = np.unique(y[at], return_counts=True)
        if len(classes) < 2:
            continue
        for c in classes:
            keep.append(rng.choice(at[y[at] == c], size=counts.min(), replace=False))
    return np.sort(np.concatenate(keep)) if keep else np.array([], dtype=np.int64)


def balanced_weights(position: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Point weights whose weighted mean of anything is its expectation over every random
    ``position_balanced`` subsample: no sampling noise.

    At a position with labels ``C_p`` and rarest count ``m_p``, a subsample takes ``m_p``
    points of each label, so a point of cell ``(p, c)`` is drawn with probability
    ``m_p / n_pc``; positions that one label alone reaches get weight 0.
    """
    weights = np.zeros(len(y))
    for p in np.unique(position):
        at = np.flatnonzero(position == p)
        classes, inverse, counts = np.unique(y[at], return_inverse=True, return_counts=True)
        if len(classes) >= 2:
            weights[at] = counts.min() / counts[inverse]
    return weights
