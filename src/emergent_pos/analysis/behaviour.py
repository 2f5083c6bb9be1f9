"""Does the model keep the count in each context? Its probability of the scheme's end token, per prefix.

A probe cannot read a count the model does not keep. Beside the probes' transfer across
prefixes (the report's ``prefix_transfer``), this measures the model's own behaviour on
the same validation prompts of every prefix: the probability of the scheme's end token
(``schemes.base.Decision``: the full stop after the last word, the newline after the last
sentence or line, the list's closing full stop, the line break at the width) where the
count says the end comes, against where it does not, and after each unit. A model that
counts puts its end-token mass where the end comes; one that does not spreads it.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from emergent_pos.analysis.forward import PromptSet, Readout
from emergent_pos.analysis.measure import Task, measure
from emergent_pos.dataset.schemes.base import Decision


def ratio_interval(sums: np.ndarray, counts: np.ndarray, n_boot: int = 1000, seed: int = 0) -> list[float]:
    """95% percentile interval of ``sum(sums) / sum(counts)`` when prompts are resampled."""
    draws = np.random.default_rng(seed).integers(0, len(sums), size=(n_boot, len(sums)))
    with np.errstate(invalid="ignore", divide="ignore"):
        stats = sums[draws].sum(1) / counts[draws].sum(1)
    return [round(float(v), 4) for v in np.nanquantile(stats, [0.025, 0.975])]


def behaviour(
    bridge: Any,
    table: pd.DataFrame,
    roles: list[str],
    decision: Decision,
    n_units: int,
    n_prompts: int,
    bin_width: int = 1,
    readout: Readout | None = None,
) -> list[dict]:
    """Per prefix of the validation ``table`` (``roles[prefix_id]`` names it): the end
    token's mean probability where the end comes (``at_end``) and elsewhere, each with its
    prompt-bootstrap interval, and its mean after each unit (``by_unit``)."""
    readout = readout or Readout(bridge)
    rows = []
    for prefix_id in sorted(int(k) for k in pd.unique(table.prefix_id)):
        ps = PromptSet.from_table(table, n_units, n_prompts, bin_width, prefix_id)
        if not len(ps):
            continue
        task = Task.build(ps, decision, bridge.tokenizer, {}, n_units)
        out = measure(bridge, task, lambda idx, lengths: [], readout, desc=f"behaviour, prefix {prefix_id}")
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a unit no prompt decides at: NaN
            mean = out.end_sums.sum(0) / out.end_n.sum(0)
            by_unit = np.nanmean(out.end_prob, 0)
        rows.append(
            {
                "prefix_id": prefix_id,
                "role": roles[prefix_id] if prefix_id < len(roles) else None,
                "n_prompts": len(ps),
                "at_end": round(float(mean[0]), 4),
                "at_end_ci": ratio_interval(out.end_sums[:, 0], out.end_n[:, 0]),
                "elsewhere": round(float(mean[1]), 4),
                "elsewhere_ci": ratio_interval(out.end_sums[:, 1], out.end_n[:, 1]),
                "by_unit": [None if np.isnan(v) else round(float(v), 4) for v in by_unit],
            }
        )
    return rows
