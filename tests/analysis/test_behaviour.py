"""The model's own end-token probability per prefix, against a plain forward pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from emergent_pos.analysis.behaviour import behaviour
from emergent_pos.analysis.forward import PromptSet
from emergent_pos.analysis.measure import Task
from emergent_pos.dataset.prompts import prompts_path
from emergent_pos.dataset.schemes import SCHEMES
from emergent_pos.io.files import read_parquet


def test_behaviour_is_the_models_own_end_probability_on_every_prefix(tiny_project: Path, tiny_bridge) -> None:
    val = read_parquet(prompts_path("val", tiny_project / "data/prompts"))
    decision = SCHEMES["word_in_sentence"].decision
    roles = ["train", "same-length control", "paragraph"]
    rows = behaviour(tiny_bridge, val, roles, decision, 7, n_prompts=6)
    assert [r["prefix_id"] for r in rows] == sorted(val[val.n_units == 7].prefix_id.unique())
    for r in rows:
        ps = PromptSet.from_table(val, 7, 6, 1, r["prefix_id"])
        task = Task.build(ps, decision, tiny_bridge.tokenizer, {}, 7)
        at_end, elsewhere = [], []
        for i, seq in enumerate(task.seqs):  # one prompt at a time: no padding at all
            with torch.inference_mode():
                p = torch.softmax(tiny_bridge(torch.as_tensor(seq)[None], return_type="logits")[0].float(), -1)
            p_end = p[task.decide[i], task.end_id].numpy()
            at_end += list(p_end[task.ends_here[i]])
            elsewhere += list(p_end[~task.ends_here[i]])
        assert r["at_end"] == pytest.approx(np.mean(at_end), abs=1e-4)
        assert r["elsewhere"] == pytest.approx(np.mean(elsewhere), abs=1e-4)
        assert r["at_end_ci"][0] <= r["at_end"] <= r["at_end_ci"][1]
        assert r["role"] == roles[r["prefix_id"]] and r["n_prompts"] == 6
        # the paragraph's first sentence ends after word 6 too: its "." follows in the text itself
        assert sum(h.sum() for h in task.ends_here) == 6 * (2 if r["role"] == "paragraph" else 1)
