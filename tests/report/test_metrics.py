"""Metrics: intervals over prompts, and the headline evaluation of a long predictions table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from emergent_pos.report.metrics import bootstrap_ci, evaluate


def test_bootstrap_interval_shrinks_with_more_prompts() -> None:
    rng = np.random.default_rng(0)
    widths = []
    for n_prompts in (100, 1600):
        pid = np.repeat(np.arange(n_prompts), 7)
        correct = rng.random(len(pid)) < 0.7
        lo, hi = bootstrap_ci(correct, pid, seed=0)
        assert lo < correct.mean() < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 3  # ~1/sqrt(16) = 1/4


def test_evaluate_reads_the_long_table_per_layer() -> None:
    """Accuracy, selectivity and the position-shuffled control per layer, against hand counts."""
    rng = np.random.default_rng(0)
    n = 700
    points = pd.DataFrame(
        {
            "point": np.arange(n),
            "prompt_id": np.repeat(np.arange(100), 7),
            "prefix_id": 0,
            "n_words": 7,
            "position": rng.integers(20, 26, n),
            "word_index": np.tile(np.arange(7), 100),
            "majority": 0,
            "position_only": rng.integers(0, 7, n),
            "position_and_space": rng.integers(0, 7, n),
            "position_control_label": rng.integers(0, 7, n),
        }
    )
    y = points.word_index.to_numpy()
    perfect = points.assign(layer=1, hook="h1", probe=y, position_control=points.position_control_label)
    noisy = points.assign(layer=0, hook="h0", probe=np.where(rng.random(n) < 0.5, y, 0), position_control=0)
    ev = evaluate(pd.concat([noisy, perfect], ignore_index=True))
    assert ev["layers"][1]["accuracy"] == 1.0 and ev["layers"][1]["position_control_accuracy"] == 1.0
    assert ev["layers"][0]["accuracy"] == round(float(np.mean(noisy.probe == y)), 4)
    best_baseline = max(float(np.mean(points[b] == y)) for b in ("majority", "position_only", "position_and_space"))
    assert ev["layers"][1]["selectivity"] == round(1.0 - round(best_baseline, 4), 4)
    assert ev["layers"][0]["position_control_selectivity"] == round(
        ev["layers"][0]["accuracy"] - round(float(np.mean(points.position_control_label == 0)), 4), 4
    )
    assert ev["balanced_points"] > 0 and ev["layers"][1]["balanced_accuracy"] == 1.0
    r = ev["layers"][0]
    assert r["accuracy_ci_low"] <= r["accuracy"] <= r["accuracy_ci_high"]
    assert r["balanced_ci_low"] <= r["balanced_accuracy"] <= r["balanced_ci_high"]
