"""Tiny models and params built offline from configs; shared by the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from emergent_pos.config import SEED_PREFIX, ModelConfig, ToyConfig
from emergent_pos.dictionary import source_words
from emergent_pos.model import save_model
from emergent_pos.organism import build_toy_model, tokenizer_texts, train_tokenizer

REPO = Path(__file__).resolve().parents[1]

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
    "prompts": {"prefix": SEED_PREFIX, "n_words": 7, "n_train": 60, "n_val": 40, "prepend_bos": True},
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
}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 2-layer GPT-2 with the organism's tokenizer, saved like the model stage does."""
    toy = ToyConfig(**TINY_TOY)
    words, freqs = source_words("wordfreq", toy.n_source_words)
    tok = train_tokenizer(words, freqs, tokenizer_texts(SEED_PREFIX), toy.vocab_size)
    model = build_toy_model(toy, tok).eval()
    out = tmp_path_factory.mktemp("model") / "model"
    save_model(model, tok, ModelConfig(), seed=0, out=out)
    return out


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


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    """A directory laid out like the repo (stages/, params.yaml) for running stage scripts."""
    shutil.copytree(REPO / "stages", tmp_path / "stages")
    write_params(tmp_path / "params.yaml")
    return tmp_path


def run_stage(cwd: Path, stage: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a real stage script as DVC would (its own process, cwd = repo root)."""
    full_env = {**os.environ, "EMERGENT_POS_DEVICE": "cpu", **(env or {})}
    proc = subprocess.run(
        [sys.executable, f"stages/{stage}.py"], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"stage {stage} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc
