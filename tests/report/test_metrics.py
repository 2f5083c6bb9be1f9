"""Metrics: intervals over prompts, and the headline evaluation of a long predictions table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from emergent_pos.report.metrics import bootstrap_ci, evaluate, prefix_transfer


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
            "n_units": 7,
            "position": rng.integers(20, 26, n),
            "confound": rng.integers(1, 4, n),
            "label": np.tile(np.arange(7), 100),
            "majority": 0,
            "position_only": rng.integers(0, 7, n),
            "confound_only": rng.integers(0, 7, n),
            "position_and_space": rng.integers(0, 7, n),
            "position_control_label": rng.integers(0, 7, n),
        }
    )
    y = points.label.to_numpy()
    perfect = points.assign(layer=1, hook="h1", probe=y, position_control=points.position_control_label)
    noisy = points.assign(layer=0, hook="h0", probe=np.where(rng.random(n) < 0.5, y, 0), position_control=0)
    ev = evaluate(pd.concat([noisy, perfect], ignore_index=True))
    assert ev["layers"][1]["accuracy"] == 1.0 and ev["layers"][1]["position_control_accuracy"] == 1.0
    assert ev["layers"][0]["accuracy"] == round(float(np.mean(noisy.probe == y)), 4)
    names = ("majority", "position_only", "confound_only", "position_and_space")
    best_baseline = max(float(np.mean(points[b] == y)) for b in names)
    assert ev["layers"][1]["selectivity"] == round(1.0 - round(best_baseline, 4), 4)
    assert ev["layers"][0]["position_control_selectivity"] == round(
        ev["layers"][0]["accuracy"] - round(float(np.mean(points.position_control_label == 0)), 4), 4
    )
    assert ev["balanced_points"] > 0 and ev["layers"][1]["balanced_accuracy"] == 1.0
    r = ev["layers"][0]
    assert r["accuracy_ci_low"] <= r["accuracy"] <= r["accuracy_ci_high"]
    assert r["balanced_ci_low"] <= r["balanced_accuracy"] <= r["balanced_ci_high"]


def test_r2_is_out_of_sample_and_its_interval_covers_it() -> None:
    from emergent_pos.report.metrics import bootstrap_r2, r2

    rng = np.random.default_rng(0)
    y = rng.normal(size=700)
    pid = np.repeat(np.arange(100), 7)
    assert r2(y, y) == 1.0 and abs(r2(y, np.full_like(y, y.mean()))) < 1e-12
    pred = y + rng.normal(scale=0.5, size=700)
    lo, hi = bootstrap_r2(y, pred, pid)
    assert lo < r2(y, pred) < hi and 0.6 < r2(y, pred) < 0.9
    assert r2(y, -y) < 0  # worse than the mean: R² is not clipped


def test_prefix_transfer_scores_each_prefix_with_an_interval() -> None:
    """Per prefix and layer: accuracy as counted by hand, an interval around it; the
    position baseline of each prefix; other unit counts are left out."""
    rows = []
    for prefix_id, hits in ((0, [1, 1, 1, 1]), (1, [1, 0, 0, 0])):
        for prompt in range(4):
            for layer in (0, 1):
                label = prompt % 3
                probe = label if (hits[prompt] or layer == 1) else label + 1
                rows.append(
                    {"prefix_id": prefix_id, "n_units": 7, "prompt_id": 10 * prefix_id + prompt, "layer": layer}
                    | {"label": label, "probe": probe, "position_only": 0, "position": 5}
                )
    rows.append(rows[0] | {"n_units": 5, "probe": 99})
    out = prefix_transfer(pd.DataFrame(rows), 7)
    assert set(out) == {"0", "1"}
    assert out["0"]["accuracy"] == {"0": 1.0, "1": 1.0} and out["1"]["accuracy"] == {"0": 0.25, "1": 1.0}
    lo, hi = out["1"]["ci"]["0"]
    assert 0.0 <= lo <= 0.25 <= hi <= 1.0 and lo < hi
    assert out["1"]["position_only"] == 0.5 and out["1"]["n_prompts"] == 4  # labels 0,1,2,0: two are 0
    assert "after_restart" not in out["0"]  # no prompt's labels fall back


def test_a_paragraphs_second_sentence_is_scored_alone() -> None:
    """Labels 0 1 2 0 1 2 in a prompt: the points from the second 0 on are after the restart,
    whatever order the rows come in."""
    rows = []
    for prompt in range(3):
        for pos, label in enumerate([0, 1, 2, 0, 1, 2]):
            probe = label if pos < 3 else 2  # reads the first sentence, never restarts
            rows.append({"prefix_id": 4, "n_units": 3, "prompt_id": prompt, "layer": 1, "position": pos}
                        | {"label": label, "probe": probe, "position_only": pos})  # fmt: skip
    frame = pd.DataFrame(rows[::-1])
    out = prefix_transfer(frame, 3)["4"]
    assert out["accuracy"]["1"] == round(4 / 6, 4)  # 0 1 2 right, then only the last 2
    assert out["after_restart"]["accuracy"]["1"] == round(1 / 3, 4)
    assert out["after_restart"]["position_only"] == 0.0 and out["after_restart"]["n_prompts"] == 3
