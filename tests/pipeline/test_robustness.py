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

from helpers import BIN, ENV, copy_finished, dvc, one_line_error, ran, run_stage, run_stage_in_process, write_params


@pytest.fixture(scope="module")
def built(tiny_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the finished tiny project, where stage scripts are run directly."""
    return copy_finished(tiny_project, tmp_path_factory.mktemp("built"))


def test_prompt_longer_than_context(built: Path) -> None:
    write_params(built / "params.yaml", prompts={"n_units": 60})  # 19 + 60 x 2 > 128
    one_line_error(run_stage(built, "prompts", check=False), "prompts.n_units", "60", "context is 128")


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


def test_same_params_give_identical_outputs(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stages rerun here, in this process, write the bytes `dvc repro` wrote in its own."""
    monkeypatch.setenv("EMERGENT_POS_DEVICE", "cpu")
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
        run_stage_in_process(built, stage)
    for path, content in before.items():
        assert (built / path).read_bytes() == content, path


def test_killed_dvc_repro_recovers_without_cleanup(project_copy: Path) -> None:
    """SIGKILL the whole `dvc repro` while activations are being written; rerun; all good."""
    root = project_copy
    write_params(
        root / "params.yaml",
        prompts={"n_train": 3000, "n_val": 1000, "eval_n_units": [], "same_length_control": False},
    )
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
    # `report` and its upstream: the mechanism stages after it add nothing to this test but time
    out = subprocess.run([dvc, "repro", "report"], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Running stage 'model'" not in out.stdout  # completed stages are not redone
    assert "Running stage 'activations'" in out.stdout
    probes = json.loads((root / "data/report/probes.json").read_text())
    assert set(probes["layers"]) == {"0", "1", "2"}
    status = subprocess.run([dvc, "status", "report"], cwd=root, env=env, capture_output=True, text=True)
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


# --- a failed edit costs nothing: restore instead of recompute --------------------------


def test_a_bad_param_fails_before_any_output_is_removed(project_copy: Path) -> None:
    """The check stage refuses the typo before DVC removes the model; the fix reruns nothing."""
    root = project_copy
    model_bytes = (root / "data/model/model.safetensors").read_bytes()
    write_params(root / "params.yaml", toy={"n_heads": 3})  # must divide d_model=32
    proc = subprocess.run([str(BIN / "dvc"), "repro"], cwd=root, env=ENV, capture_output=True, text=True)
    assert proc.returncode != 0 and "toy.n_heads" in proc.stdout + proc.stderr
    assert "Running stage 'model'" not in proc.stdout
    assert (root / "data/model/model.safetensors").read_bytes() == model_bytes
    write_params(root / "params.yaml")
    assert set(ran(dvc(root, "repro"))) <= {"check"}  # run, or restored from the run-cache
    (root / "params.yaml").write_text(
        (root / "params.yaml").read_text() + "reprot:\n  layers: all\n"
    )  # a misspelt section: no stage reads it, the check stage refuses it
    proc = subprocess.run([str(BIN / "dvc"), "repro"], cwd=root, env=ENV, capture_output=True, text=True)
    assert proc.returncode != 0 and "reprot" in proc.stdout + proc.stderr and "unknown section" in proc.stderr


def test_a_missing_section_or_impossible_count_fails_in_check_before_any_output_is_removed(
    project_copy: Path,
) -> None:
    """A params.yaml without a key dvc.yaml declares (the probe section deleted, the file emptied),
    or more units than the model's context holds, is refused by `check` in one line naming the
    key; every activation file is still there."""
    root = project_copy
    hook = root / "data/activations/val/blocks.1.hook_resid_post.h5"
    before = hook.read_bytes()
    params = __import__("yaml").safe_load((root / "params.yaml").read_text())
    cases = [
        ({k: v for k, v in params.items() if k != "probe"}, "probe"),
        ({}, "seed"),
        ({**params, "prompts": {**params["prompts"], "n_units": 100000}}, "prompts.n_units=100000"),
        # one training prompt of two words cannot hold words of all three token lengths
        (
            {**params, "prompts": {**params["prompts"], "n_train": 1, "n_units": 2, "eval_n_units": [3]}},
            "prompts.n_train=1",
        ),
    ]
    for content, needle in cases:
        (root / "params.yaml").write_text(__import__("yaml").safe_dump(content))
        proc = subprocess.run([str(BIN / "dvc"), "repro"], cwd=root, env=ENV, capture_output=True, text=True)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        if needle != "prompts.n_train=1":  # check refuses these; a count of prompts is the prompts stage's
            assert "Running stage 'model'" not in proc.stdout and len(errors) == 1 and needle in errors[0], errors
        else:
            assert len(errors) == 1 and needle in errors[0] and "no word of" in errors[0], errors
        assert hook.read_bytes() == before
    write_params(root / "params.yaml")


def test_undoing_a_model_change_restores_from_the_run_cache(project_copy: Path) -> None:
    """Change a model param, rerun, change it back: every stage comes back from DVC's cache."""
    root = project_copy
    before = {p: (root / p).read_bytes() for p in ("data/model/model.safetensors", "metrics/probes.json")}
    write_params(root / "params.yaml", toy={"steps": 11})
    assert "model" in ran(dvc(root, "repro", "report"))  # the mechanism stages stay as they were
    write_params(root / "params.yaml")
    log = dvc(root, "repro")
    assert set(ran(log)) <= {"check"}, log  # nothing recomputed
    for stage in ("model", "dictionary", "prompts", "activations", "probes", "report"):  # all of them
        assert f"Stage '{stage}' is cached - skipping run" in log, (stage, log)
    for path, content in before.items():
        assert (root / path).read_bytes() == content, path
    assert "up to date" in dvc(root, "status")


# --- one line, never a traceback ---------------------------------------------------------


def test_huge_or_impossible_values_are_refused_in_one_line(built: Path) -> None:
    write_params(built / "params.yaml", seed=99999999999999999999)
    one_line_error(run_stage(built, "model", check=False), "seed", "0..4294967295")
    write_params(built / "params.yaml", toy={"d_model": 400000})
    one_line_error(run_stage(built, "model", check=False), "toy.d_model", "GiB of memory")
    write_params(built / "params.yaml", prompts={"n_train": 1000000000})
    one_line_error(run_stage(built, "prompts", check=False), "prompts.n_train", "GiB of memory")
    write_params(built / "params.yaml")
    proc = run_stage(built, "activations", env={"EMERGENT_POS_DEVICE": "cuda:3"}, check=False)
    one_line_error(proc, "EMERGENT_POS_DEVICE", "device(s) visible")
    proc = run_stage(built, "heads", env={"EMERGENT_POS_DEVICE": "auto", "EMERGENT_POS_PLACEMENT": "4"}, check=False)
    one_line_error(proc, "EMERGENT_POS_PLACEMENT", "needs 4 CUDA devices")
    mixed = '{"device_map": {"transformer.h.0": 0, "transformer.h.1": "cpu"}}'
    proc = run_stage(
        built, "activations", env={"EMERGENT_POS_DEVICE": "auto", "EMERGENT_POS_PLACEMENT": mixed}, check=False
    )
    one_line_error(proc, "EMERGENT_POS_PLACEMENT", "TransformerLens cannot place the model so")


def test_corrupt_inputs_name_the_file(built: Path, tmp_path: Path) -> None:
    prompts = built / "data/prompts/val.parquet"
    saved = prompts.read_bytes()
    try:
        prompts.write_bytes(saved[: len(saved) // 2])
        one_line_error(run_stage(built, "activations", check=False), "data/prompts/val.parquet", "dvc repro")
    finally:
        prompts.write_bytes(saved)
    hook = built / "data/activations/val/blocks.1.hook_resid_post.h5"
    saved = hook.read_bytes()
    try:
        hook.write_bytes(saved[: len(saved) // 3])  # truncated
        one_line_error(run_stage(built, "probes", check=False), str(hook.relative_to(built)), "truncated")
        flipped = bytearray(saved)  # same size, bytes flipped inside the data chunks
        for i in range(len(saved) // 2, len(saved) // 2 + 64):
            flipped[i] ^= 0xFF
        hook.write_bytes(bytes(flipped))
        one_line_error(run_stage(built, "probes", check=False), str(hook.relative_to(built)), "corrupt")
    finally:
        hook.write_bytes(saved)


def test_messages_blame_the_key_at_fault(built: Path, tmp_path: Path) -> None:
    write_params(built / "params.yaml", prompts={"prefix": "word " * 1000})
    one_line_error(run_stage(built, "prompts", check=False), "prompts.prefix", "leaving no room")
    words = tmp_path / "three.txt"
    words.write_text("cat\ndog\nfish\n")
    write_params(built / "params.yaml", dictionary={"source": str(words)})
    one_line_error(run_stage(built, "dictionary", check=False), "dictionary.source", "3 source words")
    not_a_model = tmp_path / "data"
    not_a_model.mkdir()
    write_params(built / "params.yaml", model={"name": str(not_a_model)})
    line = one_line_error(run_stage(built, "model", check=False), "not a model directory")
    assert "hf download" not in line
    write_params(built / "params.yaml")


def test_top_components_need_the_best_layer_attributed(built: Path) -> None:
    """``interventions.components: k`` ranks by attribution to the best layer; when
    ``attribution.layers`` left that layer out, it is refused instead of ablating nothing."""
    import pandas as pd

    ranked = built / "data/attribution/components.parquet"
    saved = ranked.read_bytes()
    best = json.loads((built / "metrics/probes.json").read_text())["best_layer"]
    try:
        table = pd.read_parquet(ranked)
        table[table.layer != best].to_parquet(ranked)
        write_params(built / "params.yaml", interventions={"components": 2})
        proc = run_stage(built, "interventions", check=False)
        one_line_error(proc, "interventions.components", f"best layer, {best}", "attribution.layers")
    finally:
        ranked.write_bytes(saved)
        write_params(built / "params.yaml")


# --- no debris ---------------------------------------------------------------------------


def test_leftover_temporaries_are_swept_and_ignored(built: Path) -> None:
    """What a kill leaves (temporary files beside and inside outputs) is invisible to git and
    removed by the stage's next run."""
    debris = [
        built / "metrics/.tmp-probes.json-x1y2",
        built / "data/report/.tmp-position_accuracy.json-abc",
        built / "plots/report/.tmp-key_plot_layer_01.png-zz",
    ]
    for path in debris:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half a file")
    (built / "data/.tmp-model-q1w2e3").mkdir()
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *map(str, debris)], cwd=built, capture_output=True, text=True
    )
    assert len(ignored.stdout.splitlines()) == len(debris)
    proc = run_stage(built, "report")
    assert "removed 3 temporary file(s)" in proc.stderr
    assert not any(p.exists() for p in debris)
    assert (built / "data/.tmp-model-q1w2e3").exists()  # another stage's: left for that stage
