"""The model stage: Hugging Face names through an offline cache, random init, clear failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from transformers import AutoTokenizer

from helpers import one_line_error, run_stage, write_params

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "89abcdef0123456789abcdef0123456789abcdef"


def _fake_hub_cache(model_dir: Path, hf_home: Path, repo_id: str, ref: str = "main", commit: str = COMMIT) -> None:
    """Lay a saved model out as the Hugging Face hub cache does, as if downloaded (at ``ref``)."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(model_dir, snapshot, ignore=shutil.ignore_patterns("model_card.json"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / ref).write_text(commit)


def test_hub_revision_loads_offline_from_cache(tiny_model_dir: Path, workdir: Path, tmp_path: Path) -> None:
    """``model.revision`` picks that snapshot (main holds other weights) and goes on the card."""
    hf_home = tmp_path / "hf"
    _fake_hub_cache(tiny_model_dir, hf_home, "tiny-org/tiny-gpt2", "step1000", COMMIT)
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    weights = load_file(other / "model.safetensors")
    save_file({k: v + 1 for k, v in weights.items()}, other / "model.safetensors", metadata={"format": "pt"})
    _fake_hub_cache(other, hf_home, "tiny-org/tiny-gpt2", "main", OTHER)
    write_params(workdir / "params.yaml", model={"name": "tiny-org/tiny-gpt2", "revision": "step1000"})
    run_stage(workdir, "model", env={"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"})
    card = json.loads((workdir / "data/model/model_card.json").read_text())
    assert card["name"] == "tiny-org/tiny-gpt2" and card["init"] == "pretrained" and card["n_layers"] == 2
    assert card["revision"] == "step1000" and card["commit"] == COMMIT
    got = load_file(workdir / "data/model/model.safetensors")
    want = load_file(tiny_model_dir / "model.safetensors")
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
    assert json.loads((workdir / "plots/model/training_loss.json").read_text()) == []


def test_local_directory_with_random_init(tiny_model_dir: Path, workdir: Path) -> None:
    write_params(workdir / "params.yaml", model={"name": str(tiny_model_dir), "init": "random"}, seed=3)
    run_stage(workdir, "model")
    card = json.loads((workdir / "data/model/model_card.json").read_text())
    assert card["init"] == "random" and card["seed"] == 3
    got = load_file(workdir / "data/model/model.safetensors")
    want = load_file(tiny_model_dir / "model.safetensors")
    assert got.keys() == want.keys()
    assert not np.allclose(got["transformer.h.0.attn.c_attn.weight"], want["transformer.h.0.attn.c_attn.weight"])
    saved, original = (AutoTokenizer.from_pretrained(d) for d in (workdir / "data/model", tiny_model_dir))
    assert saved.get_vocab() == original.get_vocab()
    text = "When the zebra quixotically sang"
    assert saved(text)["input_ids"] == original(text)["input_ids"]


def test_missing_weights_fail_in_one_line_without_fallback(workdir: Path, tmp_path: Path) -> None:
    write_params(workdir / "params.yaml", model={"name": "no-such-org/no-such-model"})
    proc = run_stage(workdir, "model", env={"HF_HOME": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1"}, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.name='no-such-org/no-such-model'" in lines[0] and "hf download" in lines[0]
    assert not (workdir / "data/model").exists()


def test_toy_organism_trains_and_is_deterministic(workdir: Path) -> None:
    run_stage(workdir, "model")
    first = (workdir / "data/model/model.safetensors").read_bytes()
    curve = json.loads((workdir / "plots/model/training_loss.json").read_text())
    assert len(curve) == 10 and curve[-1]["loss"] < curve[0]["loss"]
    shutil.rmtree(workdir / "data/model")
    run_stage(workdir, "model")
    assert (workdir / "data/model/model.safetensors").read_bytes() == first


def test_unreachable_hub_fails_fast_without_offline_flag(workdir: Path, tmp_path: Path) -> None:
    """No HF_HUB_OFFLINE, hub unreachable: the one-line error comes in seconds, not after retries."""
    import time

    write_params(workdir / "params.yaml", model={"name": "no-such-org/no-such-model"})
    env = {"HF_HOME": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}
    t0 = time.perf_counter()
    proc = run_stage(workdir, "model", env=env, check=False)
    seconds = time.perf_counter() - t0
    one_line_error(proc, "model.name='no-such-org/no-such-model'", "hub unreachable", "hf download")
    assert seconds < 5 + 4  # the stage's own start-up (imports) is about 4 s on this machine
