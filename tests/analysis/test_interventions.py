"""Interventions that must change nothing do not; ones that must destroy the probe do."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emergent_pos.analysis.forward import PromptSet, ablatable, donors, model_components, pad
from emergent_pos.analysis.interventions import (
    Pairs,
    Task,
    ablate,
    compositions,
    make_pairs,
    measure,
    patch,
    position_means,
    probe_basis,
    project_out,
    random_basis,
    resample,
)
from emergent_pos.analysis.tokens import load_probes
from emergent_pos.dataset.prompts import prompts_path
from emergent_pos.io.files import read_parquet
from emergent_pos.model.hooks import residual_hooks
from emergent_pos.model.load import load_bridge
from helpers import one_line_error, run_stage, write_params


@pytest.fixture(scope="module")
def task(tiny_project: Path, tiny_bridge) -> Task:
    ps = PromptSet.from_table(read_parquet(prompts_path("val", tiny_project / "data/prompts")), 7, 8)
    probes = load_probes(tiny_bridge.cfg.n_layers, root=tiny_project / "data/probes")
    end = tiny_bridge.tokenizer(".", add_special_tokens=False)["input_ids"]
    return Task(ps, end, probes, 7)


def none(idx: np.ndarray, lengths: np.ndarray) -> list:
    return []


def test_rank_zero_projection_changes_nothing_and_full_rank_destroys_the_probe(tiny_bridge, task: Task) -> None:
    layer = 1
    hook = residual_hooks(tiny_bridge.cfg.n_layers)[layer]
    clean = measure(tiny_bridge, task, none)
    d = tiny_bridge.cfg.d_model
    empty = torch.zeros((d, 0))
    same = measure(tiny_bridge, task, lambda i, n: [(hook, project_out(empty))])
    np.testing.assert_allclose(same.loss, clean.loss, rtol=1e-5)
    np.testing.assert_array_equal(same.correct, clean.correct)
    full = torch.as_tensor(random_basis(d, d, np.random.default_rng(0)), dtype=torch.float32)
    gone = measure(tiny_bridge, task, lambda i, n: [(hook, project_out(full))])
    j = sorted(task.probes).index(layer)
    # every point's stream is 0: the probe predicts one constant index, right once per prompt of 7 words
    assert gone.accuracy()[j] == pytest.approx(1 / 7)
    assert clean.accuracy()[j] > 1 / 7


def test_probe_basis_spans_the_class_differences(task: Task) -> None:
    probe = task.probes[1]
    q = probe_basis(probe)
    assert q.shape[1] == len(probe.classes) - 1
    np.testing.assert_allclose(q.T @ q, np.eye(q.shape[1]), atol=1e-8)
    w = probe.coef / probe.scale
    diffs = w[1:] - w[0]
    np.testing.assert_allclose(diffs @ q @ q.T, diffs, atol=1e-8)  # inside the subspace


def test_resampling_from_oneself_changes_nothing(tiny_bridge, task: Task) -> None:
    hook = residual_hooks(tiny_bridge.cfg.n_layers)[1]
    q = torch.as_tensor(probe_basis(task.probes[1]), dtype=torch.float32)
    clean = measure(tiny_bridge, task, none)
    same = measure(tiny_bridge, task, lambda i, n: [(hook, resample(q, np.arange(len(i))))])
    np.testing.assert_allclose(same.loss, clean.loss, rtol=1e-4)


def test_donors_are_never_shorter() -> None:
    lengths = np.array([5, 7, 7, 6, 9])
    d = donors(lengths, np.random.default_rng(0))
    assert np.all(lengths[d] >= lengths)
    assert all(d[i] != i for i in range(4))  # only the unique longest keeps itself
    assert d[4] == 4


def test_ablating_a_component_with_zero_output_weights_changes_nothing(tiny_project: Path, task: Task) -> None:
    bridge = load_bridge(tiny_project / "data/model", "cpu")  # a private copy: its weights are edited
    d_head = bridge.cfg.d_head
    with torch.no_grad():
        bridge.original_model.transformer.h[0].attn.c_proj.weight[:d_head] = 0.0  # head 0's rows of W_O
        bridge.original_model.transformer.h[0].mlp.c_proj.weight.zero_()  # the MLP writes only its bias
    assert bridge.W_O[0, 0].abs().max() == 0
    comps = {c.name: c for c in ablatable(model_components(bridge))}
    clean = measure(bridge, task, none)
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


def test_patching_a_run_into_itself_changes_nothing(tiny_bridge, task: Task) -> None:
    ps = task.ps
    seqs = [ps.tokens[i][: ps.anchor(0) + 5] for i in range(4)]
    same = Pairs(pad(seqs), pad(seqs), np.zeros(4, dtype=int), np.ones(4, dtype=int), ps.anchor(0) + 1)
    comps = [
        c for c in model_components(tiny_bridge) if c.name == "embed" or c in ablatable(model_components(tiny_bridge))
    ]
    gain, full, _ = patch(tiny_bridge, same, task.probes[2], 2, comps)
    assert gain.shape == (len(comps), 4, 4)
    np.testing.assert_allclose(gain, 0.0, atol=1e-5)
    np.testing.assert_allclose(full, 0.0, atol=1e-5)


def test_pairs_end_one_word_apart() -> None:
    words = {n: [np.full(n, 10 * n + k) for k in range(3)] for n in (1, 2, 3)}
    pairs = make_pairs(words, np.array([1, 2]), 20, 5, np.random.default_rng(0))
    assert pairs.a.shape == pairs.b.shape == (20, 7)
    assert np.all(pairs.index_b == pairs.index_a + 1)
    assert {len(p) for p in compositions(4, 3)[2]} == {2} and (1, 3) in compositions(4, 3)[2]


def test_stage_outputs(tiny_project: Path) -> None:
    m = json.loads((tiny_project / "data/interventions/summary.json").read_text())
    for loss in ("word_ends_loss", "stop_decision_loss", "all_tokens_loss"):
        assert set(m[loss]) == {"clean", "projection", "resample"}
        assert m[loss]["projection"]["random"]["sd"] >= 0
    details = json.loads((tiny_project / "data/interventions/details.json").read_text())
    assert {r["component"] for r in details["patching"]} >= {"embed", "L0H0", "L1.mlp"}
    assert len(details["steering"]) == 2
    assert (tiny_project / "data/tokens/tokens.html").read_text().startswith("<!doctype html>")


def test_bad_layer_fails_in_one_line_before_running(project_copy: Path) -> None:
    write_params(project_copy / "params.yaml", interventions={"layers": [7]})
    proc = run_stage(project_copy, "interventions", check=False)
    one_line_error(proc, "bad parameter interventions.layers=7", "layers are 0..2")
