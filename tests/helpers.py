"""Tiny params and ways to run the real stages and DVC, shared by the tests."""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from emergent_pos.dataset.words import SEED_PREFIX

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

TINY_TOY = {
    "n_layers": 2,
    "d_model": 32,
    "n_heads": 2,
    "n_positions": 128,
    "vocab_size": 400,
    "n_source_words": 3000,
    "max_word_tokens": 4,
    "prompt_words": 7,
    "min_words": 3,
    "max_words": 9,
    "seq_len": 64,
    "batch_size": 8,
    "steps": 10,
    "lr": 0.003,
}
TINY_PARAMS = {
    "seed": 0,
    "model": {"name": "toy", "init": "pretrained", "trust_remote_code": False},
    "toy": TINY_TOY,
    "dictionary": {"source": "wordfreq", "n_words": 2000, "max_tokens": 3, "train_fraction": 0.8},
    "prompts": {
        "scheme": "word_in_sentence",
        "prefix": SEED_PREFIX,
        "n_units": 7,
        "n_train": 60,
        "n_val": 40,
        "n_heldout": 30,
        "eval_n_units": [5, 9],
        "prepend_bos": True,
    },
    "activations": {"dtype": "float32", "processing": "raw"},
    "probe": {
        "token": "last",
        "solver": "lbfgs",
        "C": 1.0,
        "max_iter": 200,
        "multi_class": "multinomial",
        "standardize": True,
        "seed": 0,
    },
    "report": {"layers": [1]},
    "heads": {"n_prompts": 8, "top_k": 2, "n_examples": 1},
    "attribution": {"n_prompts": 8},
    "interventions": {"n_prompts": 8, "n_random": 2, "n_pairs": 8, "patch_tokens": 4, "patch_layer": 2},
    "tokens": {"texts": ["\nWhen the rain stopped, the children ran"], "layers": [0, 1]},
}
ENV = {
    **os.environ,
    "PATH": f"{BIN}:{os.environ['PATH']}",
    "EMERGENT_POS_DEVICE": "cpu",
    "DVC_NO_ANALYTICS": "1",
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}
# What a clone of the repo needs to run the pipeline (generated and local files excluded).
PROJECT_FILES = ["dvc.yaml", "stages", "src", "texts", ".dvcignore", ".gitignore", ".dvc"]
IGNORED = shutil.ignore_patterns("cache", "tmp", "config.local", "__pycache__", "*.egg-info")


def write_params(path: Path, **overrides: dict) -> dict:
    """TINY_PARAMS with per-section overrides, written to ``path``."""
    params = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY_PARAMS.items()}
    for section, values in overrides.items():
        if isinstance(values, dict):
            params[section].update(values)
        else:
            params[section] = values
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def copy_project(dst: Path, src: Path = REPO) -> Path:
    """The files a pipeline run needs, copied from the repo (or from another project)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        path = src / name
        if path.is_dir():
            shutil.copytree(path, dst / name, ignore=IGNORED)
        elif path.exists():
            shutil.copy2(path, dst / name)
    return dst


def copy_finished(project: Path, parent: Path) -> Path:
    """A private copy of a finished project (git history and DVC cache; DVC's tmp state left out)."""
    dst = parent / "project"
    shutil.copytree(project, dst, symlinks=True, ignore=shutil.ignore_patterns("tmp"))
    return dst


def run_stage(cwd: Path, stage: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a real stage script as DVC would (its own process, cwd = repo root)."""
    proc = subprocess.run(
        [sys.executable, f"stages/{stage}.py"],
        cwd=cwd,
        env={**ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"stage {stage} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def run_stage_in_process(cwd: Path, stage: str) -> None:
    """Run a real stage script's ``main`` in this process (cwd = ``cwd``): the same code as
    ``run_stage`` without a new interpreter's start-up, for tests that run many stages.
    User errors surface as exceptions instead of one ``error:`` line."""
    old = Path.cwd()
    os.chdir(cwd)
    try:
        runpy.run_path(str(cwd / "stages" / f"{stage}.py"), run_name="stage")["main"]()
    finally:
        os.chdir(old)


def sh(cwd: Path, *args: str, env: dict | None = None) -> str:
    proc = subprocess.run(list(args), cwd=cwd, env={**ENV, **(env or {})}, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def dvc(cwd: Path, *args: str, env: dict | None = None) -> str:
    return sh(cwd, str(BIN / "dvc"), *args, env=env)


def ran(log: str) -> list[str]:
    """Stages that a `dvc repro` log says it ran, in order."""
    return [line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage")]


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Assert a stage failed with exit 2 and exactly one ``error:`` line (no traceback)."""
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def no_hooks(idx, lengths) -> list:
    """A hook maker of the causal tests that adds no hooks: the clean run."""
    return []
