"""Count or countdown? What a probe trained at one unit count predicts at another.

A probe trained on prompts of ``n`` units may read "units so far" (a count) or "units
until the expected end" (a countdown): at ``n`` units both give the same label. On
prompts of ``m != n`` units they part: unit ``i`` is ``i`` by the count and ``i + n - m``
by the countdown. Agreement with each hypothesis is measured on the points where the
two differ and both name a label the probe was trained on (``0..n-1``; a hypothesis
that names another label cannot be matched by any prediction), with prompt-bootstrap
intervals, beside the agreement of the position-only baseline: a classifier of
absolute position alone already looks like a count on shorter prompts (their first
units sit where the training prompts' first units did), so a verdict needs the probe
to beat it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emergent_pos.dataset.labels import LABEL
from emergent_pos.probes.predictions import LAYER, PROBE
from emergent_pos.report.metrics import bootstrap_ci


def hypotheses(index: np.ndarray, n_trained: int, n_units: int) -> dict[str, np.ndarray]:
    """The label each hypothesis expects for unit ``index`` of an ``n_units``-unit prompt."""
    return {"count": index, "countdown": index + n_trained - n_units}


def count_vs_countdown(pred: pd.DataFrame, n_trained: int, layer: int) -> dict[str, dict]:
    """Per evaluation count (training prefix, ``n_units != n_trained``) at one layer."""
    out = {}
    part = pred[(pred.prefix_id == 0) & (pred.n_units != n_trained) & (pred[LAYER] == layer)]
    for m, g in part.groupby("n_units"):
        i, p, pid = g[LABEL].to_numpy(), g[PROBE].to_numpy(), g.prompt_id.to_numpy()
        hyp = hypotheses(i, n_trained, int(m))
        in_range = [(h >= 0) & (h < n_trained) for h in hyp.values()]
        differ = (hyp["count"] != hyp["countdown"]) & in_range[0] & in_range[1]
        row: dict = {"n_points": int(differ.sum()), "units_compared": sorted({int(v) for v in i[differ]})}
        if not differ.any():  # every unit's two hypotheses agree or fall outside the trained labels
            out[str(int(m))] = {**row, "verdict": "undecided"}
            continue
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
