"""Ablating a component whose output weights are zero changes nothing; one that writes does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from emergent_pos.analysis.ablation import ablate, position_means
from emergent_pos.analysis.components import Layout
from emergent_pos.analysis.forward import donors
from emergent_pos.analysis.measure import Task, measure
from emergent_pos.model.load import load_bridge
from helpers import no_hooks


def test_ablating_a_component_with_zero_output_weights_changes_nothing(tiny_project: Path, task: Task) -> None:
    bridge = load_bridge(tiny_project / "data/model", "cpu")  # a private copy: its weights are edited
    d_head = bridge.cfg.d_head
    with torch.no_grad():
        bridge.original_model.transformer.h[0].attn.c_proj.weight[:d_head] = 0.0  # head 0's rows of W_O
        bridge.original_model.transformer.h[0].mlp.c_proj.weight.zero_()  # the MLP writes only its bias
    assert bridge.blocks[0].attn.W_O[0].abs().max() == 0
    comps = {c.name: c for c in Layout.read(bridge).components() if c.ablatable}
    clean = measure(bridge, task, no_hooks)
    means = position_means(bridge, task, [comps["L0H0"], comps["L0.mlp"]])
    for name in ("L0H0", "L0.mlp"):
        for how in ("mean", "resample"):

            def hook(i: np.ndarray, n: np.ndarray, c=comps[name], how: str = how) -> list:
                return [(c.hook, ablate(c, how, means, donors(n, np.random.default_rng(1))))]

            out = measure(bridge, task, hook)
            np.testing.assert_allclose(out.loss, clean.loss, rtol=1e-4, err_msg=f"{name} {how}")
            np.testing.assert_array_equal(out.correct, clean.correct)
    # a head that writes something does change the run
    c = comps["L0H1"]
    out = measure(bridge, task, lambda i, n: [(c.hook, ablate(c, "mean", position_means(bridge, task, [c])))])
    assert not np.allclose(out.loss, clean.loss)
