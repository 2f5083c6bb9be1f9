"""Attribution identity: the parts and the constant add up to the probe's logits on the stored stream."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from emergent_pos.activations.store import hook_path, read_rows
from emergent_pos.analysis.attribution import attribute, head_counting, logit_parts, margin
from emergent_pos.analysis.components import Layout
from emergent_pos.analysis.forward import PromptSet
from emergent_pos.dataset.prompts import prompts_path
from emergent_pos.io.files import file_sha256, read_parquet
from emergent_pos.model.hooks import residual_hooks
from emergent_pos.probes.linear import load_probes


def test_parts_plus_constant_equal_the_probe_logits_of_the_stored_stream(tiny_project: Path, tiny_bridge) -> None:
    n_layers = tiny_bridge.cfg.n_layers
    table = read_parquet(prompts_path("val", tiny_project / "data/prompts"))
    ps = PromptSet.from_table(table, 7, 6)
    probes = load_probes(n_layers, root=tiny_project / "data/probes")
    att = attribute(tiny_bridge, ps, probes, Layout.read(tiny_bridge), batch_size=4)
    rows = np.concatenate([ps.rows[i][ps.probed(i)] for i in range(len(ps))])
    sha, n = file_sha256(prompts_path("val", tiny_project / "data/prompts")), len(table)
    for j, layer in enumerate(att.layers):
        stored = read_rows(
            hook_path(tiny_project / "data/activations/val", residual_hooks(n_layers)[layer]), rows, sha, n
        )
        direct = probes[layer].decision_function(stored)
        rebuilt = att.per_index[:, j].astype(np.float64).sum(1) + att.constant[j]
        np.testing.assert_allclose(rebuilt, direct, rtol=1e-4, atol=1e-4 * np.abs(direct).max())
        # margins split the same way
        cols = np.searchsorted(probes[layer].classes, att.label)
        np.testing.assert_allclose(
            att.margins[:, j].sum(1) + att.constant_margin[:, j], margin(direct, cols), atol=1e-3
        )
        assert att.identity_error[layer] < 1e-4
    # a component never contributes to a layer before it
    assert np.all(att.margins[:, 0, 2:] == 0)


def test_logit_parts_is_the_probe_formula_term_by_term() -> None:
    from emergent_pos.probes.linear import LinearProbe

    rng = np.random.default_rng(0)
    probe = LinearProbe(
        rng.normal(size=(3, 5)), rng.normal(size=3), np.arange(3), rng.normal(size=5), rng.uniform(1, 2, 5), 1, 0
    )
    vectors = rng.normal(size=(4, 6, 5))
    parts, const = logit_parts(vectors, probe)
    np.testing.assert_allclose(parts.sum(1) + const, probe.decision_function(vectors.sum(1)))


def test_head_counting_finds_a_head_that_writes_the_count() -> None:
    rng = np.random.default_rng(0)
    label = np.tile(np.arange(7), 50)
    position = label + rng.integers(0, 10, len(label))  # word lengths vary: labels mix within a position
    direction = rng.normal(size=8)
    counting = label[:, None] * direction + 0.1 * rng.normal(size=(len(label), 8))
    noise = rng.normal(size=(len(label), 8))
    r, partial = head_counting(np.stack([counting, noise], 1), label, position)
    assert r[0] > 0.99 and partial[0] > 0.9
    assert partial[1] < 0.3


def test_stage_metrics(tiny_project: Path) -> None:
    att = json.loads((tiny_project / "data/attribution/attribution.json").read_text())
    assert set(att["layers"]) == {"0", "1", "2"}
    assert all(v["identity_error"] < 1e-3 for v in att["layers"].values())
    heads = json.loads((tiny_project / "data/heads/heads.json").read_text())
    assert len(heads["heads"]) == 4 and set(heads["heads"][0]) >= {"own_unit_start", "bos"}
    assert (tiny_project / "plots/heads/scores.png").stat().st_size > 0
