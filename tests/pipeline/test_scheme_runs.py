"""Every reference scheme through every stage on the tiny project (its real stage code, in this process)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from emergent_pos.dataset.schemes import SCHEMES
from helpers import run_stage_in_process, write_params

STAGES = ("prompts", "activations", "probes", "report", "heads", "attribution", "interventions", "tokens")


@pytest.fixture(scope="module")
def work(tiny_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The finished tiny project's model and dictionary, with its stage scripts, in a private directory."""
    root = tmp_path_factory.mktemp("schemes")
    for name in ("stages", "texts", "dvc.yaml"):
        src = tiny_project / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, root / name)
    for name in ("model", "dictionary"):
        shutil.copytree(tiny_project / "data" / name, root / "data" / name)
    return root


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_each_scheme_runs_every_stage(work: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMERGENT_POS_DEVICE", "cpu")
    scheme = SCHEMES[name]
    write_params(
        work / "params.yaml",
        # wrapped lines cost the tiny tokenizer many tokens: three of them fit its context of 128
        prompts={
            "scheme": name,
            "n_units": 3 if scheme.ordinal else 7,
            "line_width": [12, 24],
            "n_train": 40,
            "n_val": 16,
            "n_heldout": 8,
        },
        probe={"max_iter": 100},
        heads={"n_prompts": 4, "top_k": 1, "n_examples": 1},
        attribution={"n_prompts": 4},
        interventions={"n_prompts": 4, "n_random": 2, "n_pairs": 4, "patch_tokens": 4, "patch_layer": 1},
        tokens={"texts": ["\nWhen the rain stopped, the children ran"], "layers": [1]},
    )
    for stage in STAGES:
        run_stage_in_process(work, stage)
    table = pd.read_parquet(work / "data/prompts/val.parquet")
    assert (table.scheme == name).all()
    summary = json.loads((work / "data/prompts/summary.json").read_text())
    assert summary["scheme"] == name and summary["rule"] == scheme.rule
    headline = json.loads((work / "metrics/probes.json").read_text())
    report = json.loads((work / "data/report/probes.json").read_text())
    assert report["scheme"] == name and report["unit"] == scheme.unit
    assert {"position_only", "confound_only"} <= {b["baseline"] for b in headline["baselines"]}
    assert 0 <= headline["accuracy"] <= 1 and headline["best_layer"] in (0, 1, 2)
    assert ("r2" in headline) == scheme.ordinal  # an ordinal scheme's ridge probe, scored out of sample
    assert bool(headline["count_verdicts"]) == scheme.countdown
    for stage, path in (("heads", "data/heads/heads.json"), ("attribution", "data/attribution/attribution.json")):
        assert json.loads((work / path).read_text())["applies"], stage
    assert json.loads((work / "data/interventions/summary.json").read_text())["applies"]
    assert (work / "plots/report/accuracy_by_layer.png").stat().st_size > 0
    # the word-type control is scored on held-out units whose last word it was fitted on
    assert all(r["word_control_points"] > 0 for r in report["layers"].values())


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_causal_invariants_hold_on_each_schemes_own_decisions(tiny_bridge, tiny_project: Path, name: str) -> None:
    """On each scheme's prompts and decision tokens: projecting out a rank-0 subspace changes nothing,
    patching a run into itself recovers nothing, and ablating a head whose output weights are zero
    changes nothing while ablating one that writes does."""
    import numpy as np
    import torch
    from transformers import AutoTokenizer

    from emergent_pos.analysis.ablation import ablate, position_means
    from emergent_pos.analysis.components import Layout
    from emergent_pos.analysis.forward import PromptSet, pad
    from emergent_pos.analysis.measure import Task, measure
    from emergent_pos.analysis.patching import Pairs, patch
    from emergent_pos.analysis.subspace import project_out
    from emergent_pos.dataset.config import DictionaryConfig, PromptsConfig
    from emergent_pos.dataset.dictionary import build_dictionary
    from emergent_pos.dataset.prompts import build_prompts
    from emergent_pos.dataset.words import source_words
    from emergent_pos.model.hooks import residual_hooks
    from emergent_pos.model.load import load_bridge
    from emergent_pos.probes.linear import load_probes
    from helpers import no_hooks

    tok = AutoTokenizer.from_pretrained(tiny_project / "data/model")
    words, _ = source_words("wordfreq", 2000)
    train, val = build_dictionary(words, tok, DictionaryConfig(n_words=2000), seed=0)
    n_units = 3 if SCHEMES[name].ordinal else 7  # the tiny context holds three wrapped lines
    cfg = PromptsConfig(scheme=name, n_units=n_units, line_width=[12, 24], n_train=20, n_val=8, n_heldout=6)
    ps = PromptSet.from_table(build_prompts(train, val, tok, cfg, 3, seed=0)["val"], n_units, 8)
    probes = {2: load_probes(2, [2], tiny_project / "data/probes")[2]}
    bridge = load_bridge(tiny_project / "data/model", "cpu")  # a private copy: its weights are edited below
    task = Task.build(ps, SCHEMES[name].decision, tok, probes, n_units)
    clean = measure(bridge, task, no_hooks)
    assert clean.loss_n[:, 2].sum() > 0  # the scheme's stop decision is measured
    hook = residual_hooks(2)[1]
    same = measure(bridge, task, lambda i, n: [(hook, project_out(torch.zeros((bridge.cfg.d_model, 0))))])
    np.testing.assert_allclose(same.loss, clean.loss, rtol=1e-5)
    seqs = [ps.tokens[i][: ps.start(i) + 5] for i in range(3)]
    start = min(ps.start(i) for i in range(3))
    seqs = [s[: start + 5] for s in seqs]
    comps = {c.name: c for c in Layout.read(bridge).components()}
    pairs = Pairs(pad(seqs), pad(seqs), np.zeros(3, dtype=int), np.ones(3, dtype=int), start)
    gain, full, _ = patch(bridge, pairs, probes[2], 2, [comps["embed"], comps["L0H0"], comps["L1.mlp"]])
    np.testing.assert_allclose(gain, 0.0, atol=1e-5)
    with torch.no_grad():
        bridge.original_model.transformer.h[0].attn.c_proj.weight[: bridge.cfg.d_head] = 0.0
    means = position_means(bridge, task, [comps["L0H0"], comps["L0H1"]])
    clean = measure(bridge, task, no_hooks)
    for head, changes in (("L0H0", False), ("L0H1", True)):
        c = comps[head]
        out = measure(bridge, task, lambda i, n, c=c: [(c.hook, ablate(c, "mean", means))])
        assert np.allclose(out.loss, clean.loss, rtol=1e-6) != changes, (name, head)
