"""Stage plumbing: no arguments taken, leftovers swept, failures in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from emergent_pos.errors import UserError
from emergent_pos.io.cli import stage_outputs, sweep_temporaries, user_message
from emergent_pos.io.files import read_parquet, write_json
from helpers import REPO, run_stage


def test_stage_scripts_refuse_arguments_and_explain_themselves(workdir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "stages/probes.py", "--layer", "3"], cwd=workdir, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "usage: python stages/probes.py" in proc.stderr and "'--layer'" in proc.stderr
    assert not (workdir / "data").exists()  # nothing ran
    proc = subprocess.run([sys.executable, "stages/probes.py", "--help"], cwd=workdir, capture_output=True, text=True)
    assert proc.returncode == 0 and "Stage `probes`" in proc.stdout and "dvc repro probes" in proc.stdout


def test_outputs_come_from_dvc_yaml_and_only_leftovers_are_swept(tmp_path: Path) -> None:
    outs = stage_outputs("report", REPO / "dvc.yaml")
    assert Path("metrics/probes.json") in outs and Path("plots/report") in outs
    (tmp_path / "plots").mkdir()
    keep = tmp_path / "plots" / "kept.png"
    keep.write_text("x")
    leftovers = [tmp_path / "plots" / ".tmp-kept.png-abc", tmp_path / ".tmp-plots-xyz"]
    leftovers[0].write_text("half")
    leftovers[1].mkdir()
    assert sweep_temporaries([tmp_path / "plots"]) == 2
    assert keep.exists() and not any(p.exists() for p in leftovers)


def test_user_errors_are_one_line_and_bugs_are_not(tmp_path: Path) -> None:
    bad = tmp_path / "t.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(UserError) as err:
        read_parquet(bad)
    assert str(bad) in user_message(err.value) and "\n" not in user_message(err.value)
    assert user_message(MemoryError()) and user_message(KeyError("a bug")) is None
    write_json(tmp_path / "a.json", {"b": 1})
    assert (tmp_path / "a.json").read_text() == '{\n  "b": 1\n}\n' and not list(tmp_path.glob(".tmp-*"))


def test_a_missing_input_is_one_line(workdir: Path) -> None:
    proc = run_stage(workdir, "report", check=False)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error:") and "data/model" in proc.stderr
