"""An unavailable model fails in the check stage, in seconds, and data/model survives."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from emergent_pos.model.hub import hub_reachable
from helpers import BIN, ENV, write_params


def test_closed_port_is_unreachable_at_once(monkeypatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    t0 = time.perf_counter()
    assert not hub_reachable(timeout=2.0)
    assert time.perf_counter() - t0 < 2.6


def test_failed_model_experiment_removes_nothing(project_copy: Path, tmp_path: Path) -> None:
    """`dvc repro` with a model neither cached nor reachable fails in `check`, before DVC
    removes data/model (no HF_HUB_OFFLINE: the hub probe finds the hub unreachable)."""
    write_params(project_copy / "params.yaml", model={"name": "gpt2"})
    env = {**ENV, "HF_HOME": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}
    t0 = time.perf_counter()
    proc = subprocess.run([str(BIN / "dvc"), "repro"], cwd=project_copy, env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    out = proc.stderr + proc.stdout
    assert "model.name='gpt2'" in out and "hub is unreachable" in out and "Traceback" not in out
    assert time.perf_counter() - t0 < 30
    assert (project_copy / "data/model/model.safetensors").exists()
