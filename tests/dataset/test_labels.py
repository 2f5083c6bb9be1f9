"""Labels and probed tokens: which rows a probe reads, and position-balanced subsets."""

from __future__ import annotations

import numpy as np
import pandas as pd

from emergent_pos.dataset.labels import Points, balanced_weights, position_balanced
from emergent_pos.probes.baselines import LookupBaseline


def _table() -> pd.DataFrame:
    """One prompt: a 2-token prefix, then words of 2, 1 and 3 tokens."""
    word_index = [-1, -1, 0, 0, 1, 2, 2, 2]
    token_in_word = [-1, -1, 0, 1, 0, 0, 1, 2]
    n_tokens = [0, 0, 2, 2, 1, 3, 3, 3]
    return pd.DataFrame(
        {
            "prompt_id": 0,
            "prefix_id": 0,
            "position": range(8),
            "word_index": word_index,
            "word": ["", "", "ab", "ab", "c", "def", "def", "def"],
            "n_words": 3,
            "is_word_start": [t == 0 for t in token_in_word],
            "is_word_end": [w >= 0 and t == n - 1 for w, t, n in zip(word_index, token_in_word, n_tokens, strict=True)],
        }
    )


def test_token_choices_select_the_right_rows() -> None:
    table = _table()
    last, first, every = (Points.select(table, t) for t in ("last", "first", "all"))
    assert last.rows.tolist() == [3, 4, 7] and last.label.tolist() == [0, 1, 2]
    assert first.rows.tolist() == [2, 4, 5] and first.starts_word.all()
    assert every.rows.tolist() == list(range(2, 8)) and every.label.tolist() == [0, 0, 1, 2, 2, 2]
    assert last.take(np.array([2])).position.tolist() == [7] and len(last) == 3


def test_position_balanced_subset_is_balanced() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 4, size=(3000, 7))
    position = (20 + np.cumsum(lengths, axis=1) - 1).ravel()  # word-end positions, as in the prompts
    y = np.tile(np.arange(7), 3000)
    idx = position_balanced(position, y, np.random.default_rng(1))
    assert len(idx) > 1000 and np.all(np.diff(idx) > 0)
    for p in np.unique(position[idx]):
        counts = np.bincount(y[idx][position[idx] == p])
        assert len(set(counts[counts > 0])) == 1  # every index present at p equally often
        assert (counts > 0).sum() == len(np.unique(y[position == p]))  # and none dropped
    # position alone is at chance on the balanced subset
    base = LookupBaseline.fit(position[:, None], y).predict(position[idx][:, None])
    per_position_chance = np.mean([1 / len(np.unique(y[position == p])) for p in position[idx]])
    assert abs(np.mean(base == y[idx]) - per_position_chance) < 0.03


def test_balanced_weights_are_the_expectation_over_balanced_subsamples() -> None:
    """The weighted accuracy equals the mean over many random balanced subsamples."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 4, size=(400, 7))
    position = (20 + np.cumsum(lengths, axis=1) - 1).ravel()
    y = np.tile(np.arange(7), 400)
    correct = rng.random(len(y)) < np.where(y % 2 == 0, 0.9, 0.4)  # accuracy depends on the cell
    w = balanced_weights(position, y)
    weighted = np.sum(correct * w) / np.sum(w)
    draws = [correct[position_balanced(position, y, np.random.default_rng(s))].mean() for s in range(400)]
    assert abs(weighted - np.mean(draws)) < 3 * np.std(draws) / np.sqrt(len(draws))
    assert abs(np.sum(w) - len(position_balanced(position, y, rng))) < 1e-6  # the subsample's size
    assert np.all(w[np.isin(position, [p for p in np.unique(position) if len(np.unique(y[position == p])) < 2])] == 0)
