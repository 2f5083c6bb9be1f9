"""Count or countdown? What a probe trained at one word count predicts at another.

A probe trained on prompts of ``n`` words may read "words so far" (a count) or "words
until the expected end" (a countdown): at ``n`` words both give the same label. On
prompts of ``m != n`` words they part: word ``i`` is ``min(i, n - 1)`` by the count and
``clip(i + n - m, 0, n - 1)`` by the countdown. Agreement with each hypothesis is
measured on the points where the two differ, with prompt-bootstrap intervals, beside
the agreement of the position-only baseline: a classifier of absolute position alone
already looks like a count on shorter prompts (their first words sit where the training
prompts' first words did), so a verdict needs the probe to beat it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emergent_pos.dataset.labels import LABEL
from emergent_pos.probes.predictions import LAYER, PROBE
from emergent_pos.report.metrics import bootstrap_ci


def hypotheses(index: np.ndarray, n_trained: int, n_words: int) -> dict[str, np.ndarray]:
    """The label each hypothesis expects for word ``index`` of an ``n_words``-word prompt."""
    return {
        "count": np.minimum(index, n_trained - 1),
        "countdown": np.clip(index + n_trained - n_words, 0, n_trained - 1),
    }


def count_vs_countdown(pred: pd.DataFrame, n_trained: int, layer: int) -> dict[str, dict]:
    """Per evaluation length (training prefix, ``n_words != n_trained``) at one layer."""
    out = {}
    part = pred[(pred.prefix_id == 0) & (pred.n_words != n_trained) & (pred[LAYER] == layer)]
    for m, g in part.groupby("n_words"):
        i, p, pid = g[LABEL].to_numpy(), g[PROBE].to_numpy(), g.prompt_id.to_numpy()
        hyp = hypotheses(i, n_trained, int(m))
        differ = hyp["count"] != hyp["countdown"]
        row: dict = {"n_points": int(differ.sum())}
        baseline = g.position_only.to_numpy()[differ] if "position_only" in g else None
        for name, expected in hyp.items():
            agree = p[differ] == expected[differ]
            lo, hi = bootstrap_ci(agree, pid[differ])
            row[name] = {"agreement": round(float(agree.mean()), 4), "ci_low": round(lo, 4), "ci_high": round(hi, 4)}
            if baseline is not None:
                row[name]["position_only"] = round(float(np.mean(baseline == expected[differ])), 4)
        row["verdict"] = "undecided"
        for name, other in (("count", "countdown"), ("countdown", "count")):
            r = row[name]
            if r["ci_low"] > row[other]["ci_high"] and r["ci_low"] > r.get("position_only", 0.0):
                row["verdict"] = name
        dist = np.zeros((int(m), n_trained))
        np.add.at(dist, (i, p), 1)
        row["predicted_given_true"] = (dist / dist.sum(axis=1, keepdims=True).clip(min=1)).round(4).tolist()
        out[str(int(m))] = row
    return out
