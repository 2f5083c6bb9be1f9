"""`emergent-pos`: the summary is README's headline table; both subcommands fail in one line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from emergent_pos.commands import main
from helpers import BIN, ENV, REPO, dvc


def emergent_pos(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "emergent-pos"), *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300
    )


def test_summary_prints_readme_headline_table() -> None:
    proc = emergent_pos("summary")
    assert proc.returncode == 0, proc.stderr
    table = proc.stdout.strip()
    assert table.count("\n") >= 3 and table.startswith("| layer | hook |")
    assert table in (REPO / "README.md").read_text()  # README's table is this output, verbatim


def test_summary_of_a_revision_and_bad_revision(tiny_project: Path, capsys: pytest.CaptureFixture) -> None:
    """In this process (the console script itself is run above): the same ``main``."""
    root = ["--root", str(tiny_project)]
    assert main(["summary", "--rev", "HEAD", *root]) == 0
    at_head = capsys.readouterr().out
    assert main(["summary", *root]) == 0
    assert capsys.readouterr().out == at_head
    assert main(["summary", "--rev", "no-such-rev", *root]) == 2
    assert capsys.readouterr().err.startswith("error: 'no-such-rev' is neither a git revision")


def test_terminal_tables_fit_in_80_columns(project_copy: Path) -> None:
    """README's `dvc exp show` filter fits an 80-column terminal with an experiment listed:
    no column collapses to "…"."""
    readme = (REPO / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("dvc exp show --drop"))
    keep = line.split("--keep ", 1)[1].split("'")[1]
    dvc(project_copy, "exp", "run", "report", "-S", "probe.C=0.5", "-n", "small-c")
    narrow = {"COLUMNS": "80"}
    shown = dvc(project_copy, "exp", "show", "--drop", ".*", "--keep", keep, env=narrow)
    assert max(len(x) for x in shown.splitlines()) <= 80 and "…" not in shown, shown
    for column in ("accuracy", "balanced", "selectivity", "probe.C", "small-c"):
        assert column in shown, shown


def test_compare_reads_steps_as_numbers_keeps_the_newest_and_skips_unfinished() -> None:
    from emergent_pos.compare import collect, output_paths, table

    def entry(name: str, revision: str, time: str) -> dict:
        params = {"params.yaml": {"data": {"model": {"revision": revision}}}}
        return {"rev": name * 5, "name": name, "data": {"timestamp": time, "params": params}, "error": None}

    finished = [entry("b", "step100", "2026-01-02"), entry("c", "step10", "2026-01-03")]
    finished += [entry("d", "step100", "2026-01-04"), entry("e", "step20", "2026-01-05")]
    # a queued experiment is listed with the baseline's metrics under a newer commit: never plotted
    queued = {"revs": [entry("q", "step100", "2026-01-09")], "executor": {"state": "queued"}}
    listing = [
        {"rev": "workspace", "data": {"params": {}}, "experiments": None},
        {**entry("main", "main", "2026-01-01"), "experiments": [{"revs": [e]} for e in finished] + [queued]},
    ]
    metrics = {"probes": {"accuracy": 0.5, "accuracy_ci": [0.4, 0.6], "layers": [{"layer": 0, "accuracy": 0.3}]}}
    points, notes = collect(
        listing, "model.revision", ["accuracy"], "accuracy", lambda rev: {} if rev == "eeeee" else metrics
    )
    assert [(p.experiment, p.x) for p in points] == [("c", 10.0), ("d", 100.0)]
    assert points[0].intervals == {"accuracy": [0.4, 0.6]} and points[0].layers == {0: {"value": 0.3}}
    assert any("not a number" in n for n in notes) and any("d shown" in n for n in notes)
    assert any(n.startswith("e: no metrics") for n in notes)
    rows = table(points, "model.revision").splitlines()[2:]  # a numeric sweep is tabled too, by its values
    assert [r.split(" | ")[0] for r in rows] == ["| `step10`", "| `step100`"]
    assert output_paths(None, "model.revision") == (
        Path("plots/compare/model.revision.png"),
        Path("plots/compare/model.revision.json"),
    )


def test_compare_slices_a_two_param_sweep_and_tables_each_scheme() -> None:
    """`--where` keeps one slice of a sweep over scheme x init; the table's row for a scheme
    shows its best layer, intervals, baselines and verdicts as metrics/probes.json holds them."""
    from emergent_pos.compare import collect, parse_where, table

    def entry(name: str, scheme: str, init: str) -> dict:
        params = {"params.yaml": {"data": {"prompts": {"scheme": scheme}, "model": {"init": init}}}}
        return {"rev": name * 5, "name": name, "data": {"timestamp": name, "params": params}, "error": None}

    runs = [entry("a", "item_in_list", "pretrained"), entry("b", "item_in_list", "random")]
    runs += [entry("c", "line_in_text", "pretrained"), entry("d", "line_in_text", "pretrained")]
    runs[-1]["data"]["params"]["params.yaml"]["data"]["probe"] = {"C": 0.1}  # another sweep's: left out
    listing = [{**entry("m", "word_in_sentence", "pretrained"), "experiments": [{"revs": [e]} for e in runs]}]
    probes = {
        "best_layer": 2,
        "accuracy": 0.9,
        "accuracy_ci": [0.88, 0.92],
        "balanced": 0.8,
        "balanced_ci": [0.75, 0.85],
        "layers": [{"layer": 2, "accuracy": 0.9, "position_control_accuracy": 0.31}],
        "baselines": [
            {"baseline": "position_only", "accuracy": 0.5, "balanced_accuracy": 0.2},
            {"baseline": "confound_only", "accuracy": 0.4, "balanced_accuracy": 0.35},
        ],
        "count_verdicts": [{"n_units": 5, "verdict": "count"}],
    }
    where = parse_where(["model.init=pretrained"])
    points, notes = collect(listing, "prompts.scheme", ["accuracy"], "accuracy", lambda rev: {"probes": probes}, where)
    assert [p.experiment for p in points] == ["a", "c", "m"]
    assert "d: also changes probe.C (left out)" in notes
    row = table(points, "prompts.scheme").splitlines()[2]
    assert row == (
        "| `item_in_list` | 2 | 0.900 [0.880, 0.920] | 0.800 [0.750, 0.850] | position_only 0.500 / 0.350 "
        "| 0.310 | 5: count | - |"
    )
    with pytest.raises(Exception, match="expected KEY=VALUE"):
        parse_where(["model.init"])
    with pytest.raises(Exception, match="with model.init=other"):
        collect(listing, "prompts.scheme", ["accuracy"], None, lambda rev: {}, {"model.init": "other"})


def test_a_stage_whose_inputs_moved_on_is_stale() -> None:
    """An experiment run up to `report` keeps its baseline's interventions metrics: they are not its own."""
    from emergent_pos.compare import stale_stages

    lock = {
        "stages": {
            "probes": {"params": {"params.yaml": {"probe": {"C": 1.0}}}, "outs": [{"path": "data/probes", "md5": "b"}]},
            "interventions": {
                "deps": [{"path": "data/probes", "md5": "a"}],
                "params": {"params.yaml": {"interventions.n_random": 20}},
                "outs": [{"path": "metrics/interventions.json", "md5": "m"}],
            },
        }
    }
    params = {"probe": {"C": 1.0}, "interventions": {"n_random": 20}}
    assert stale_stages(lock, params) == {"interventions"}  # it read probes "a", probes now wrote "b"
    lock["stages"]["interventions"]["deps"][0]["md5"] = "b"
    assert stale_stages(lock, params) == set()
    assert stale_stages(lock, {**params, "interventions": {"n_random": 50}}) == {"interventions"}
    assert stale_stages(lock, {**params, "probe": {"C": 0.5}}) == {"probes"}
