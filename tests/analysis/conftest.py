"""The tiny project's validation prompts as a causal-test task, shared by the analysis tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from emergent_pos.analysis.forward import PromptSet
from emergent_pos.analysis.measure import Task
from emergent_pos.dataset.prompts import prompts_path
from emergent_pos.dataset.schemes import SCHEMES
from emergent_pos.io.files import read_parquet
from emergent_pos.probes.linear import load_probes


@pytest.fixture(scope="module")
def task(tiny_project: Path, tiny_bridge) -> Task:
    ps = PromptSet.from_table(read_parquet(prompts_path("val", tiny_project / "data/prompts")), 7, 8)
    probes = load_probes(tiny_bridge.cfg.n_layers, root=tiny_project / "data/probes")
    return Task.build(ps, SCHEMES["word_in_sentence"].decision, tiny_bridge.tokenizer, probes, 7)
