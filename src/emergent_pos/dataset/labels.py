"""What the probes predict and which tokens they read, for any scheme: defined here and nowhere else.

The label is the prompts table's ``label`` column (``dataset/schemes/``: a unit's index,
or a count); a probe reads the ``last`` token of each unit (as the seed read each word's
last token), its ``first`` token, or ``all`` its tokens. An ordinal scheme's count is
also binned into classes for the classifier (``probe.char_bin`` characters a class).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

LABEL = "label"
"""The prompts-table column the probes predict, and its name in predictions and metrics."""

TokenChoice = Literal["last", "first", "all"]


def token_mask(prompts: pd.DataFrame, token: TokenChoice) -> np.ndarray:
    """Rows a probe reads: the last, first or every token of each unit (labelled tokens only)."""
    labelled = prompts[LABEL].to_numpy() >= 0
    flag = {"last": prompts.unit_end.to_numpy(), "first": prompts.unit_start.to_numpy(), "all": labelled}
    return flag[token] & labelled


@dataclass(frozen=True)
class Points:
    """The probed tokens of one split: table rows, labels and what baselines may see."""

    rows: np.ndarray  # sorted row numbers into the prompts table (= activation rows)
    label: np.ndarray  # the class a classifier predicts (a count binned for an ordinal scheme)
    count: np.ndarray  # the table's label itself (equal to ``label`` unless ordinal)
    position: np.ndarray  # absolute token position in the prompt
    confound: np.ndarray  # the scheme's nearer confound (tokens since the anchor, words so far, ...)
    prompt_id: np.ndarray
    starts_word: np.ndarray  # the token begins a word (with a space, or at a line start)
    prefix_id: np.ndarray  # 0 = prompts.prefix; others are training or evaluation prefixes
    n_units: np.ndarray  # units in the point's prompt (prompts.n_units, or an evaluation count)
    word: np.ndarray  # the word type a memorising probe could key on (the word-type control's labels)

    @classmethod
    def select(cls, prompts: pd.DataFrame, token: TokenChoice, bin_width: int = 1) -> Points:
        sel = np.flatnonzero(token_mask(prompts, token))
        count = prompts[LABEL].to_numpy()[sel]
        return cls(
            rows=sel,
            label=count // bin_width,
            count=count,
            position=prompts.position.to_numpy()[sel],
            confound=prompts.confound.to_numpy()[sel],
            prompt_id=prompts.prompt_id.to_numpy()[sel],
            starts_word=prompts.is_word_start.to_numpy()[sel],
            prefix_id=prompts.prefix_id.to_numpy()[sel],
            n_units=prompts.n_units.to_numpy()[sel],
            word=prompts.word_type.to_numpy()[sel],
        )

    def take(self, idx: np.ndarray) -> Points:
        return Points(**{f: getattr(self, f)[idx] for f in self.__dataclass_fields__})

    def __len__(self) -> int:
        return len(self.rows)

    def main(self, n_units: int) -> np.ndarray:
        """Mask of the main evaluation set: the training prefix at the training unit count."""
        return (self.prefix_id == 0) & (self.n_units == n_units)


def cells(*keys: np.ndarray) -> np.ndarray:
    """One id per distinct combination of the given per-point keys (position, confound, ...)."""
    return np.unique(np.stack(keys, axis=1), axis=0, return_inverse=True)[1].ravel()


def position_balanced(groups: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a subset in which, in every group (an absolute position, or a
    (position, confound) cell) where two or more labels occur, each occurs equally often
    (subsampled to the rarest). Groups that one label alone reaches are left out: the
    group alone answers them.
    """
    keep = []
    for g in np.unique(groups):
        at = np.flatnonzero(groups == g)
        classes, counts = np.unique(y[at], return_counts=True)
        if len(classes) < 2:
            continue
        for c in classes:
            keep.append(rng.choice(at[y[at] == c], size=counts.min(), replace=False))
    return np.sort(np.concatenate(keep)) if keep else np.array([], dtype=np.int64)


def balanced_weights(groups: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Point weights whose weighted mean of anything is its expectation over every random
    ``position_balanced`` subsample: no sampling noise.

    In a group with labels ``C_g`` and rarest count ``m_g``, a subsample takes ``m_g``
    points of each label, so a point of cell ``(g, c)`` is drawn with probability
    ``m_g / n_gc``; groups that one label alone reaches get weight 0.
    """
    weights = np.zeros(len(y))
    for g in np.unique(groups):
        at = np.flatnonzero(groups == g)
        classes, inverse, counts = np.unique(y[at], return_inverse=True, return_counts=True)
        if len(classes) >= 2:
            weights[at] = counts.min() / counts[inverse]
    return weights
