"""Labels and probed tokens: which rows a probe reads, and position-balanced subsets."""

from __future__ import annotations

import numpy as np
import pandas as pd

from emergent_pos.dataset.labels import Points, balanced_weights, cells, position_balanced
from emergent_pos.probes.baselines import LookupBaseline


def _table() -> pd.DataFrame:
    """One prompt: a 2-token prefix, then units of 2, 1 and 3 tokens."""
    label = [-1, -1, 0, 0, 1, 2, 2, 2]
    token_in_unit = [-1, -1, 0, 1, 0, 0, 1, 2]
    n_tokens = [0, 0, 2, 2, 1, 3, 3, 3]
    return pd.DataFrame(
        {
            "prompt_id": 0,
            "prefix_id": 0,
            "position": range(8),
            "label": label,
            "confound": [-1, -1, 1, 2, 3, 4, 5, 6],
            "word_type": ["", "", "ab", "ab", "c", "def", "def", "def"],
            "n_units": 3,
            "unit_start": [t == 0 for t in token_in_unit],
            "unit_end": [w >= 0 and t == n - 1 for w, t, n in zip(label, token_in_unit, n_tokens, strict=True)],
            "is_word_start": [t == 0 for t in token_in_unit],
        }
    )


def test_token_choices_select_the_right_rows() -> None:
    table = _table()
    last, first, every = (Points.select(table, t) for t in ("last", "first", "all"))
    assert last.rows.tolist() == [3, 4, 7] and last.label.tolist() == [0, 1, 2]
    assert first.rows.tolist() == [2, 4, 5] and first.starts_word.all()
    assert every.rows.tolist() == list(range(2, 8)) and every.label.tolist() == [0, 0, 1, 2, 2, 2]
    assert last.take(np.array([2])).position.tolist() == [7] and len(last) == 3
    assert last.confound.tolist() == [2, 3, 6] and last.word.tolist() == ["ab", "c", "def"]


def test_an_ordinal_count_is_binned_for_the_classifier() -> None:
    table = _table().assign(label=[-1, -1, 3, 7, 9, 12, 14, 20])
    points = Points.select(table, "all", bin_width=5)
    assert points.count.tolist() == [3, 7, 9, 12, 14, 20] and points.label.tolist() == [0, 1, 1, 2, 2, 4]


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


def test_balancing_on_position_and_confound_balances_every_cell() -> None:
    """Two prefixes put the same confound (tokens since the anchor) at different positions:
    balancing on (position, confound) cells leaves neither alone informative."""
    rng = np.random.default_rng(0)
    confound = rng.integers(1, 15, 4000)
    prefix = rng.integers(0, 2, 4000)
    position = confound + np.where(prefix == 0, 19, 5)
    y = np.clip(confound // 2 + rng.integers(-1, 2, 4000), 0, 6)
    groups = cells(position, confound)
    idx = position_balanced(groups, y, np.random.default_rng(1))
    for g in np.unique(groups[idx]):
        counts = np.bincount(y[idx][groups[idx] == g])
        assert len(set(counts[counts > 0])) == 1
    assert len(np.unique(groups)) == len({(p, c) for p, c in zip(position, confound, strict=True)})
