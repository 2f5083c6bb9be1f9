"""Fixtures: a tiny model built offline from a config, and one tiny DVC project for the session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from emergent_pos.dataset.words import SEED_PREFIX, source_words
from emergent_pos.model.build import save_model
from emergent_pos.model.config import ModelConfig, ToyConfig
from emergent_pos.model.corpus import fixed_texts
from emergent_pos.model.organism import build_toy_model, train_tokenizer
from helpers import REPO, TINY_TOY, copy_finished, copy_project, dvc, sh, write_params


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 2-layer GPT-2 with the organism's tokenizer, saved like the model stage does."""
    toy = ToyConfig(**TINY_TOY)
    words, freqs = source_words("wordfreq", toy.n_source_words)
    tok = train_tokenizer(words, freqs, fixed_texts(SEED_PREFIX, toy), toy.vocab_size)
    model = build_toy_model(toy, tok).eval()
    out = tmp_path_factory.mktemp("model") / "model"
    save_model(model, tok, ModelConfig(), seed=0, out=out)
    return out


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    """A directory laid out like the repo (stages/, dvc.yaml, params.yaml) for running stage scripts."""
    shutil.copytree(REPO / "stages", tmp_path / "stages")
    shutil.copytree(REPO / "texts", tmp_path / "texts")
    shutil.copy2(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    write_params(tmp_path / "params.yaml")
    return tmp_path


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repo with tiny params, `dvc repro` run once and committed: built once per session.

    Tests that change it work on a copy (``project_copy``), so every DVC-level test
    starts from the same finished run without paying for it again.
    """
    root = copy_project(tmp_path_factory.mktemp("tiny") / "project")
    write_params(root / "params.yaml")
    sh(root, "git", "init", "-q")
    log = dvc(root, "repro")
    (root / "repro.log").write_text(log)
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "tiny run")
    return root


@pytest.fixture()
def project_copy(tiny_project: Path, tmp_path: Path) -> Path:
    """A private copy of the finished tiny project (git history and DVC cache included)."""
    return copy_finished(tiny_project, tmp_path)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` run where CUDA is present and skip, saying so, elsewhere."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="marked gpu: needs CUDA, none here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_bridge(tiny_project: Path):
    """The finished tiny project's model, loaded once through the TransformerLens bridge."""
    from emergent_pos.model.load import load_bridge

    return load_bridge(tiny_project / "data/model", "cpu")
