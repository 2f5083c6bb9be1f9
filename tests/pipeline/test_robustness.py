"""Bad input, interruptions and reruns: each fails fast in one line or recovers by itself."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from emergent_pos.activations.extract import check_disk
from helpers import BIN, ENV, one_line_error, run_stage, write_params


@pytest.fixture(scope="module")
def built(tiny_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the finished tiny project, where stage scripts are run directly."""
    dst = tmp_path_factory.mktemp("built") / "project"
    shutil.copytree(tiny_project, dst, symlinks=True, ignore=shutil.ignore_patterns("tmp"))
    return dst


def test_prompt_longer_than_context(built: Path) -> None:
    write_params(built / "params.yaml", prompts={"n_words": 60})  # 19 + 60 x 3 > 128
    one_line_error(run_stage(built, "prompts", check=False), "prompts.n_words", "60", "context is 128")


def test_report_layer_outside_model(built: Path) -> None:
    write_params(built / "params.yaml", report={"layers": [7]})
    one_line_error(run_stage(built, "report", check=False), "report.layers", "0..2")


def test_word_list_is_cleaned_or_refused(built: Path) -> None:
    words = built / "words.txt"
    words.write_text("\n".join(["the", "", "The", "the", "don't", *__import__("wordfreq").top_n_list("en", 3000)]))
    write_params(built / "params.yaml", dictionary={"source": str(words)})
    proc = run_stage(built, "dictionary")
    assert "dropped 1 empty" in proc.stderr and "duplicates" in proc.stderr
    write_params(built / "params.yaml", dictionary={"source": str(built / "nope.txt")})
    one_line_error(run_stage(built, "dictionary", check=False), "dictionary.source", "nope.txt")
    write_params(built / "params.yaml")
    run_stage(built, "dictionary")


def test_mismatched_prompts_and_activations_are_refused(built: Path) -> None:
    saved = built / "saved_prompts"
    shutil.copytree(built / "data/prompts", saved)
    write_params(built / "params.yaml", seed=1)
    run_stage(built, "prompts")  # new prompts, stale activations
    one_line_error(run_stage(built, "probes", check=False), "computed from prompts", "dvc repro activations")
    shutil.rmtree(built / "data/prompts")
    shutil.copytree(saved, built / "data/prompts")
    write_params(built / "params.yaml")


def test_same_params_give_identical_outputs(built: Path) -> None:
    before = {
        p: (built / p).read_bytes()
        for p in [
            "data/dictionary/train.parquet",
            "data/dictionary/val.parquet",
            "data/prompts/train.parquet",
            "data/prompts/val.parquet",
            "data/activations/val/blocks.1.hook_resid_post.h5",
            "data/probes/predictions_val.parquet",
            "metrics/probes.json",
        ]
    }
    for stage in ["dictionary", "prompts", "activations", "probes", "report"]:
        run_stage(built, stage)
    for path, content in before.items():
        assert (built / path).read_bytes() == content, path


def test_disk_space_is_checked_before_writing(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="GiB"):
        check_disk(tmp_path, 10**18)
    check_disk(tmp_path, 1000)


def test_killed_dvc_repro_recovers_without_cleanup(project_copy: Path) -> None:
    """SIGKILL the whole `dvc repro` while activations are being written; rerun; all good."""
    root = project_copy
    write_params(root / "params.yaml", prompts={"n_train": 3000, "n_val": 3000})
    env = {**ENV, "EMERGENT_POS_BATCH_TOKENS": "256"}
    dvc = str(BIN / "dvc")
    proc = subprocess.Popen(
        [dvc, "repro"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 300
    acts = root / "data/activations/train"
    # the previous run's files are there until DVC removes them: wait for this run's writes
    while time.time() < deadline and not (acts.exists() and list(acts.glob(".tmp-*"))):
        time.sleep(0.05)
    time.sleep(0.5)
    assert proc.poll() is None, "activations finished before the kill"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list(acts.glob("blocks.*.h5")) or not (root / "data/activations/val").exists()
    out = subprocess.run([dvc, "repro"], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Running stage 'model'" not in out.stdout  # completed stages are not redone
    assert "Running stage 'activations'" in out.stdout
    probes = json.loads((root / "metrics/probes.json").read_text())
    assert set(probes["layers"]) == {"0", "1", "2"}
    status = subprocess.run([dvc, "status"], cwd=root, env=env, capture_output=True, text=True)
    assert "up to date" in status.stdout


def test_pickled_weights_are_refused(tiny_model_dir: Path, workdir: Path, tmp_path: Path) -> None:
    """Only safetensors load: a directory holding just a pickled checkpoint is refused."""
    import torch
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, pickled, ignore=shutil.ignore_patterns("model.safetensors"))
    torch.save(load_file(tiny_model_dir / "model.safetensors"), pickled / "pytorch_model.bin")
    write_params(workdir / "params.yaml", model={"name": str(pickled)})
    one_line_error(run_stage(workdir, "model", check=False), "safetensors", str(pickled))
