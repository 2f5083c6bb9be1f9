"""The real `dvc repro` on a temporary copy of the repo with tiny params."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, write_params
from emergent_pos.metrics import accuracy
from emergent_pos.probes import LinearProbe

pytestmark = pytest.mark.slow

COPY = ["dvc.yaml", "stages", "src", ".dvcignore", "pyproject.toml"]


def _dvc(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "EMERGENT_POS_DEVICE": "cpu",
        "DVC_NO_ANALYTICS": "1",
    }
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    if proc.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def _ran(log: str) -> list[str]:
    return [line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage")]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    for name in COPY:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, root / name)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    _dvc(root, "init", "-q")
    write_params(root / "params.yaml")
    return root


def test_full_pipeline_outputs(repo: Path) -> None:
    log = _dvc(repo, "repro")
    assert _ran(log) == ["model", "dictionary", "prompts", "activations", "probes", "report"]
    card = json.loads((repo / "data/model/model_card.json").read_text())
    assert card["n_layers"] == 2 and (repo / "data/model/model.safetensors").exists()
    for split in ("train", "val"):
        assert len(pd.read_parquet(repo / f"data/dictionary/{split}.parquet")) > 0
        assert pd.read_parquet(repo / f"data/prompts/{split}.parquet").prompt_id.nunique() in (60, 40)
        assert sorted(p.name for p in (repo / f"data/activations/{split}").iterdir()) == [
            "layer_00.h5",
            "layer_01.h5",
            "layer_02.h5",
        ]
    probes = json.loads((repo / "metrics/probes.json").read_text())
    assert set(probes["layers"]) == {"0", "1", "2"} and probes["n_val"] == 40 * 7
    for r in probes["layers"].values():
        assert {"balanced_accuracy", "control_accuracy", "selectivity", "control_selectivity"} <= set(r)
    assert set(probes["baselines"]) == {"majority", "position_only", "position_and_space"}
    report = json.loads((repo / "metrics/report.json").read_text())
    for layer in ("0", "1", "2"):
        r = report["layers"][layer]
        assert r["accuracy_ci_low"] <= r["accuracy"] <= r["accuracy_ci_high"]
        assert r["accuracy"] == probes["layers"][layer]["accuracy"]
    for name in ("accuracy_by_layer.png", "key_plot_layer_01.png", "confusion_layer_01.png", "accuracy_by_layer.json"):
        assert (repo / "plots/report" / name).stat().st_size > 0
    assert not (repo / "plots/report/key_plot_layer_00.png").exists()  # report.layers: [1]
    assert (repo / "plots/model/training_loss.png").exists()
    # the saved probe reproduces the stage's predictions
    pred = pd.read_parquet(repo / "data/probes/predictions_val.parquet")
    assert accuracy(pred.word_index.to_numpy(), pred.layer_01.to_numpy()) == probes["layers"]["1"]["accuracy"]
    assert LinearProbe.load(repo / "data/probes/layer_01.npz").coef.shape == (7, 32)
    assert "Accuracy by layer" in _dvc(repo, "plots", "show", "--json")


def test_second_repro_does_nothing(repo: Path) -> None:
    assert _ran(_dvc(repo, "repro")) == []
    assert "up to date" in _dvc(repo, "status")


def test_report_param_reruns_only_report(repo: Path) -> None:
    write_params(repo / "params.yaml", report={"layers": [0, 2]})
    assert _ran(_dvc(repo, "repro")) == ["report"]
    assert (repo / "plots/report/key_plot_layer_02.png").exists()


def test_probe_param_keeps_activations(repo: Path) -> None:
    write_params(repo / "params.yaml", report={"layers": [0, 2]}, probe={"C": 0.1})
    assert _ran(_dvc(repo, "repro")) == ["probes", "report"]


def test_torch_backend_reruns_only_probes_and_agrees_with_sklearn(repo: Path) -> None:
    sklearn = json.loads((repo / "metrics/probes.json").read_text())
    write_params(repo / "params.yaml", report={"layers": [0, 2]}, probe={"C": 0.1, "backend": "torch"})
    assert _ran(_dvc(repo, "repro")) == ["probes", "report"]
    torch = json.loads((repo / "metrics/probes.json").read_text())
    for layer, r in torch["layers"].items():
        ref = sklearn["layers"][layer]
        # 280 validation points: 2 points is 0.7 percentage points
        assert abs(r["accuracy"] - ref["accuracy"]) <= 0.0075, (layer, r, ref)
        assert abs(r["control_accuracy"] - ref["control_accuracy"]) <= 0.0075, (layer, r, ref)
        assert r["convergence_warnings"] == 0


def test_n_words_reruns_prompts_onward_but_not_model(repo: Path) -> None:
    write_params(repo / "params.yaml", report={"layers": [0, 2]}, probe={"C": 0.1}, prompts={"n_words": 5})
    assert _ran(_dvc(repo, "repro")) == ["prompts", "activations", "probes", "report"]
    pred = pd.read_parquet(repo / "data/probes/predictions_val.parquet")
    assert set(np.unique(pred.word_index)) == set(range(5))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["prompts"]["n_words"] == 5


def test_variants_prefixes_nonwords_all_tokens(repo: Path) -> None:
    write_params(
        repo / "params.yaml",
        report={"layers": [0, 2]},
        probe={"C": 0.1, "token": "all", "train_balance": "position", "solver": "saga", "seeds": 2},
        prompts={"n_words": 5, "eval_prefixes": ["", "Hello.\nWhen"], "words": "random_tokens"},
    )
    assert _ran(_dvc(repo, "repro")) == ["prompts", "activations", "probes", "report"]
    probes = json.loads((repo / "metrics/probes.json").read_text())
    assert set(probes["prefix_transfer"]) == {"0", "1", "2"}
    assert probes["token"] == "all" and probes["n_val"] > 40 * 5  # every token of every word
    for r in probes["layers"].values():  # saga is stochastic: one fit per seed, spread reported
        assert len(r["seed_accuracies"]) == 2 and r["seed_accuracy_std"] >= 0
    val = pd.read_parquet(repo / "data/prompts/val.parquet")
    assert val.prefix_id.nunique() == 3 and val.prompt_id.nunique() == 3 * 40
    words = [val[val.prefix_id == k].word.tolist() for k in range(3)]
    assert [w for w in words[0] if w] == [w for w in words[1] if w] == [w for w in words[2] if w]
    assert val.word[val.word_index >= 0].str.startswith("#").all()
    assert (repo / "plots/report/prefix_transfer.png").exists()
