"""The real `dvc repro` of the tiny project: outputs, and what each kind of edit reruns."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emergent_pos.activations.store import hook_path, read_meta
from emergent_pos.api import Pipeline
from emergent_pos.commands import main
from emergent_pos.model.hooks import residual_hooks
from emergent_pos.probes.linear import LinearProbe
from emergent_pos.probes.predictions import at_layer
from emergent_pos.report.metrics import main_set
from helpers import ENV, copy_finished, dvc, ran, write_params

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tiny_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy of the finished tiny project that this module's tests edit in turn."""
    return copy_finished(tiny_project, tmp_path_factory.mktemp("repro"))


MECHANISM = ["heads", "attribution", "interventions", "tokens"]
"""The stages after the probes; the chain tests below repro `report` alone to stay quick,
and test_probe_param_keeps_activations shows which of them a probe change makes stale."""


def test_full_pipeline_outputs(repo: Path) -> None:
    assert ran((repo / "repro.log").read_text()) == [
        "check",
        "model",
        "dictionary",
        "prompts",
        "activations",
        "probes",
        "report",
        *MECHANISM,
    ]
    card = json.loads((repo / "data/model/model_card.json").read_text())
    assert card["n_layers"] == 2 and (repo / "data/model/model.safetensors").exists()
    hooks = residual_hooks(2)
    # validation: the prefix and its same-length control at 7 words, then 5 and 9 words,
    # then the two-sentence paragraphs (the scheme's variant)
    for split, n_prompts in (("train", 60), ("val", 5 * 40), ("heldout", 30)):
        assert pd.read_parquet(repo / f"data/prompts/{split}.parquet").prompt_id.nunique() == n_prompts
    for split in ("train", "val", "heldout"):
        if split != "heldout":
            assert len(pd.read_parquet(repo / f"data/dictionary/{split}.parquet")) > 0
        files = sorted(p.name for p in (repo / f"data/activations/{split}").iterdir())
        assert files == sorted(f"{h}.h5" for h in hooks)
        assert read_meta(hook_path(repo / f"data/activations/{split}", hooks[1])).shape == (32,)
    probes = json.loads((repo / "data/report/probes.json").read_text())
    assert set(probes["layers"]) == {"0", "1", "2"} and probes["n_val"] == 40 * 7
    assert [probes["layers"][str(i)]["hook"] for i in range(3)] == hooks
    for r in probes["layers"].values():
        assert {"balanced_accuracy", "balanced_ci_low", "selectivity", "position_control_selectivity"} <= set(r)
        assert {"heldout_accuracy", "word_control_accuracy", "word_control_selectivity"} <= set(r)
        assert {"train_accuracy", "n_iter", "convergence_warnings"} <= set(r)
    assert set(probes["baselines"]) == {"majority", "position_only", "confound_only", "position_and_space"}
    report = json.loads((repo / "data/report/report.json").read_text())
    for layer in ("0", "1", "2"):
        r = probes["layers"][layer]
        assert r["accuracy_ci_low"] <= r["accuracy"] <= r["accuracy_ci_high"]
        assert 0 <= report["layers"][layer]["macro_f1"] <= 1
    assert set(probes["count_vs_countdown"]) == {"5", "9"}
    # the prefix, its same-length control, then the paragraph variant (scored after its restart too)
    assert set(probes["prefix_transfer"]) == {"0", "1", "2"} and "after_restart" in probes["prefix_transfer"]["2"]
    counts = json.loads((repo / "data/report/count_vs_countdown.json").read_text())
    assert set(counts) == {"0", "1", "2"} and np.array(counts["1"]["5"]["predicted_given_true"]).shape == (5, 7)
    for name in ("accuracy_by_layer.png", "key_plot_layer_01.png", "confusion_layer_01.png"):
        assert (repo / "plots/report" / name).stat().st_size > 0
    series = json.loads((repo / "plots/accuracy_by_layer.json").read_text())
    assert {r["layer"] for r in series} == {0, 1, 2} and len(
        {r["series"] for r in series}
    ) == 7  # probe, balanced, control, four baselines
    assert not (repo / "plots/report/key_plot_layer_00.png").exists()  # report.layers: [1]
    assert (repo / "plots/model/training_loss.png").exists()
    # the saved probe, applied to the stored activations, reproduces the reported accuracy
    pred = at_layer(main_set(pd.read_parquet(repo / "data/probes/predictions_val.parquet"), 7), 1)
    assert np.mean(pred.label == pred.probe) == pytest.approx(probes["layers"]["1"]["accuracy"], abs=5e-5)
    assert LinearProbe.load(repo / f"data/probes/{hooks[1]}.npz").coef.shape == (7, 32)


def test_plot_definitions_are_complete_and_not_repeated(repo: Path) -> None:
    """Each DVC plot once, with a title and axis labels; data series coloured one by one."""
    plots = json.loads(dvc(repo, "plots", "show", "--json"))["data"]
    vega = {k: v[0]["content"] for k, v in plots.items() if v[0]["type"] == "vega"}
    assert set(vega) == {"plots/model/training_loss.json", "plots/accuracy_by_layer.json"}
    assert {k for k, v in plots.items() if v[0]["type"] == "image"} == {
        "plots/model/training_loss.png",
        "plots/report/accuracy_by_layer.png",
        "plots/report/confusion_layer_01.png",
        "plots/report/key_plot_layer_01.png",
        "plots/report/prefix_transfer.png",
        "plots/interventions/behaviour.png",
        "plots/report/count_vs_countdown.png",
        "plots/heads/scores.png",
        "plots/heads/patterns.png",
        "plots/attribution/components.png",
        "plots/interventions/subspace.png",
        "plots/interventions/patching.png",
        "plots/tokens/text_0.png",
    }
    for spec in vega.values():
        enc = spec["encoding"]
        assert spec["title"]["text"] and not spec["title"]["text"].startswith("plots/")
        assert enc["x"]["title"] and (enc.get("y") or spec["layer"][-1]["encoding"]["y"])["title"]
    spec = vega["plots/accuracy_by_layer.json"]
    by_layer = spec["encoding"]
    assert by_layer["color"]["field"] == "series" and by_layer["x"]["axis"]["format"] == "d"  # integer layer ticks
    band, line = spec["layer"]  # the intervals the legend promises, and series told apart by dash, not colour alone
    assert band["encoding"]["y"]["field"] == "ci_low" and band["encoding"]["y2"]["field"] == "ci_high"
    assert line["encoding"]["strokeDash"]["field"] == "series"


def test_second_repro_does_nothing(repo: Path) -> None:
    assert ran(dvc(repo, "repro")) == []
    assert "up to date" in dvc(repo, "status")


def test_report_param_reruns_only_report(repo: Path) -> None:
    write_params(repo / "params.yaml", report={"layers": [0, 2]})
    assert ran(dvc(repo, "repro")) == ["check", "report"]
    assert (repo / "plots/report/key_plot_layer_02.png").exists()


def test_probe_param_keeps_activations(repo: Path) -> None:
    """Run as an experiment (the same stages as `dvc repro report`, committed under
    refs/exps), which the next test compares with its baseline."""
    write_params(repo / "params.yaml", probe={"C": 0.1})  # one param away from the baseline commit
    assert ran(dvc(repo, "exp", "run", "report", "-n", "small-c")) == ["check", "probes", "report"]
    # the stages that read the probes are now stale; heads reads no probe and is not
    stale = [line[:-1] for line in dvc(repo, "status").splitlines() if line and not line[0].isspace()]
    assert sorted(stale) == ["attribution", "interventions", "tokens"]


def _committed(repo: Path, ref: str, path: str) -> dict:
    return json.loads(subprocess.run(["git", "show", f"{ref}:{path}"], cwd=repo, capture_output=True).stdout)


def test_compare_plots_the_experiment_beside_its_baseline(
    repo: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`emergent-pos compare`: per-layer values and intervals come from each commit's
    metrics file (``dvc exp show --json`` leaves lists out)."""
    monkeypatch.setenv("PATH", ENV["PATH"])  # the venv's dvc
    out = repo / "plots/compare/c"
    assert main(["compare", "probe.C", "--layers", "--out", str(out), "--root", str(repo)]) == 0, capsys.readouterr()
    data = json.loads(out.with_suffix(".json").read_text())
    assert [p["x"] for p in data["points"]] == [0.1, 1.0] and data["points"][0]["experiment"] == "small-c"
    for point in data["points"]:
        want = _committed(repo, point["rev"], "metrics/probes.json")
        assert point["metrics"]["accuracy"] == want["accuracy"]
        assert point["intervals"]["accuracy"] == want["accuracy_ci"]
        assert point["layers"]["1"]["value"] == want["layers"][1]["accuracy"]
        assert point["layers"]["1"]["ci_low"] == want["layers"][1]["accuracy_ci_low"]
    assert data["points"][0]["metrics"] != data["points"][1]["metrics"]
    assert (
        data["points"][1]["rev"] == subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=repo, text=True).strip()
    )
    assert (repo / "plots/compare/c.png").stat().st_size > 10_000
    capsys.readouterr()
    assert main(["compare", "probe.nothing", "--root", str(repo)]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: no committed experiment has the param 'probe.nothing' and metrics (see `dvc exp show`)"
    )
    # `emergent-pos experiments`: the experiment's row says what it changed and holds its metrics
    listing = repo / "plots/compare/experiments.json"
    assert main(["experiments", "--out", str(listing), "--root", str(repo)]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    small = _committed(repo, data["points"][0]["rev"], "metrics/probes.json")
    assert len(rows) == 3 and rows[2].startswith("| small-c | `probe.C=0.1`")
    assert f"| {small['accuracy']:.3f} [{small['accuracy_ci'][0]:.3f}, {small['accuracy_ci'][1]:.3f}] |" in rows[2]
    assert json.loads(listing.read_text())["experiments"][0]["files"]["probes"] == small
    assert main(["experiments", "no-such-exp", "--root", str(repo)]) == 2
    assert "no finished experiment named 'no-such-exp'" in capsys.readouterr().err


def test_torch_backend_reruns_only_probes_and_agrees_with_sklearn(repo: Path) -> None:
    sklearn = json.loads((repo / "data/report/probes.json").read_text())
    write_params(repo / "params.yaml", report={"layers": [0, 2]}, probe={"C": 0.1, "backend": "torch"})
    assert ran(dvc(repo, "repro", "report")) == ["check", "probes", "report"]
    torch = json.loads((repo / "data/report/probes.json").read_text())
    for layer, r in torch["layers"].items():
        ref = sklearn["layers"][layer]
        # 280 validation points: 2 points is 0.7 percentage points
        assert abs(r["accuracy"] - ref["accuracy"]) <= 0.0075, (layer, r, ref)
        for key in ("position_control_accuracy", "word_control_accuracy"):
            assert abs(r[key] - ref[key]) <= 0.02, (layer, key, r, ref)
        assert r["convergence_warnings"] == 0


def test_storing_only_unit_ends_gives_the_same_probes(repo: Path) -> None:
    """``activations.tokens: ends`` writes the rows the default probe reads; every reader gets the same numbers."""
    before = {f: (repo / f).read_bytes() for f in ("data/report/probes.json", "data/probes/predictions_val.parquet")}
    hook = hook_path(repo / "data/activations/val", "blocks.1.hook_resid_post")
    size = hook.stat().st_size
    params = {"report": {"layers": [0, 2]}, "probe": {"C": 0.1, "backend": "torch"}}
    write_params(repo / "params.yaml", **params, activations={"tokens": "ends"})
    # the probes' outputs come out byte-identical, so DVC has no reason to rerun the report
    assert ran(dvc(repo, "repro", "report")) == ["check", "activations", "probes"]
    assert {f: (repo / f).read_bytes() for f in before} == before
    meta = read_meta(hook)
    val = pd.read_parquet(repo / "data/prompts/val.parquet")
    assert meta.tokens == "ends" and meta.n_rows == val.unit_end.sum() < meta.n_tokens == len(val)
    assert hook.stat().st_size < size / 3
    x, rows = Pipeline(repo).activations("blocks.1.hook_resid_post")
    assert len(x) == meta.n_rows and rows.unit_end.all()
    write_params(repo / "params.yaml", **params)  # back to every token: restored from the run-cache
    assert ran(dvc(repo, "repro", "report")) == []
    assert read_meta(hook).tokens == "all" and hook.stat().st_size == size


def test_variants_prefixes_nonwords_all_tokens_extra_hooks(repo: Path) -> None:
    write_params(
        repo / "params.yaml",
        report={"layers": [0, 2]},
        probe={"C": 0.1, "token": "all", "train_balance": "position", "solver": "saga", "seeds": 2},
        prompts={
            "n_units": 5,
            "eval_n_units": [4, 6],
            "eval_prefixes": ["", "Hello.\nWhen"],
            "words": "random_tokens",
        },
        activations={"extra_hooks": ["blocks.1.attn.hook_z", "blocks.0.hook_mlp_out"]},
    )
    # prompts.n_units reruns prompts onward but not the model
    assert ran(dvc(repo, "repro", "report")) == ["check", "prompts", "activations", "probes", "report"]
    pred = pd.read_parquet(repo / "data/probes/predictions_val.parquet")
    assert set(np.unique(pred.label[pred.n_units == 5])) == set(range(5))
    assert set(np.unique(pred.probe)) <= set(range(5))  # probes trained on 5 words predict 0..4
    probes = json.loads((repo / "data/report/probes.json").read_text())
    # given prefixes, the same-length control, then the paragraph variant
    assert set(probes["prefix_transfer"]) == {"0", "1", "2", "3", "4"}
    assert probes["token"] == "all" and probes["n_val"] > 40 * 5  # every token of every word
    for r in probes["layers"].values():  # saga is stochastic: one fit per seed, spread reported
        assert len(r["seed_accuracies"]) == 2 and r["seed_accuracy_std"] >= 0
    val = pd.read_parquet(repo / "data/prompts/val.parquet")
    assert val.prefix_id.nunique() == 5 and val.prompt_id.nunique() == (5 + 2) * 40
    main = val[val.n_units == 5]
    words = [[w for w in main[main.prefix_id == k].word.tolist() if w] for k in range(4)]
    assert words[0] == words[1] == words[2] == words[3]
    assert val.word[val.label >= 0].str.startswith("#").all()
    assert (repo / "plots/report/prefix_transfer.png").exists()
    # extra hooks are stored beside the residual streams, in their own shapes
    acts = repo / "data/activations/val"
    assert read_meta(hook_path(acts, "blocks.1.attn.hook_z")).shape == (2, 16)  # n_heads x d_head
    assert read_meta(hook_path(acts, "blocks.0.hook_mlp_out")).shape == (32,)
