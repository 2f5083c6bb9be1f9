"""The interventions stage's outputs, and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import one_line_error, run_stage, write_params


def test_stage_outputs(tiny_project: Path) -> None:
    m = json.loads((tiny_project / "data/interventions/summary.json").read_text())
    for loss in ("decision_tokens_loss", "stop_decision_loss", "all_tokens_loss"):
        assert set(m[loss]) == {"clean", "projection", "resample"}
        assert m[loss]["projection"]["random"]["sd"] >= 0
    details = json.loads((tiny_project / "data/interventions/details.json").read_text())
    assert {r["component"] for r in details["patching"]} >= {"embed", "L0H0", "L1.mlp"}
    assert len(details["steering"]) == 2
    assert (tiny_project / "data/tokens/tokens.html").read_text().startswith("<!doctype html>")


def test_bad_layer_fails_in_one_line_before_running(project_copy: Path) -> None:
    write_params(project_copy / "params.yaml", interventions={"layers": [7]})
    proc = run_stage(project_copy, "interventions", check=False)
    one_line_error(proc, "bad parameter interventions.layers=7", "layers are 0..2")
