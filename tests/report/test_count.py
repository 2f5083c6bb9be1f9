"""Count or countdown: the test tells a counter from a counter-down, on synthetic predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from emergent_pos.report.count import count_vs_countdown, hypotheses


def _predictions(kind: str, n_trained: int = 7, lengths: tuple[int, ...] = (5, 9)) -> pd.DataFrame:
    rows = []
    for m in lengths:
        for prompt in range(50):
            for i in range(m):
                expected = hypotheses(np.array([i]), n_trained, m)[kind][0]
                rows.append({"prompt_id": m * 1000 + prompt, "prefix_id": 0, "n_units": m, "label": i,
                             "layer": 1, "probe": int(np.clip(expected, 0, n_trained - 1))})  # fmt: skip
    return pd.DataFrame(rows)


def test_hypotheses_part_ways_off_the_training_length() -> None:
    h = hypotheses(np.arange(5), 7, 5)
    assert h["count"].tolist() == [0, 1, 2, 3, 4] and h["countdown"].tolist() == [2, 3, 4, 5, 6]
    h = hypotheses(np.arange(9), 7, 9)
    assert h["count"].tolist() == list(range(9)) and h["countdown"].tolist() == list(range(-2, 7))
    same = hypotheses(np.arange(7), 7, 7)
    assert same["count"].tolist() == same["countdown"].tolist()  # indistinguishable at the training length


def test_a_counter_and_a_counter_down_get_their_verdicts() -> None:
    for kind in ("count", "countdown"):
        result = count_vs_countdown(_predictions(kind), 7, layer=1)
        assert set(result) == {"5", "9"}
        for m, row in result.items():
            assert row["verdict"] == kind and row[kind]["agreement"] == 1.0
            assert np.allclose(np.sum(row["predicted_given_true"], axis=1), 1.0)
            # compared: the units where both hypotheses name a trained label and differ (9 units: 2..6)
            assert row["units_compared"] == (list(range(5)) if m == "5" else [2, 3, 4, 5, 6])
    mixed = _predictions("count")
    mixed["probe"] = np.random.default_rng(0).integers(0, 7, len(mixed))
    assert {r["verdict"] for r in count_vs_countdown(mixed, 7, layer=1).values()} == {"undecided"}


def test_a_position_classifier_is_no_count() -> None:
    """Absolute position alone looks like a count on shorter prompts: the verdict needs more."""
    pred = _predictions("count")
    pred["position_only"] = pred.probe
    for row in count_vs_countdown(pred, 7, layer=1).values():
        assert row["count"]["agreement"] == row["count"]["position_only"] == 1.0
        assert row["verdict"] == "undecided"
