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


def test_terminal_tables_fit_in_160_columns(tiny_project: Path) -> None:
    """`dvc metrics show` and README's documented `dvc exp show` filter fit a terminal."""
    readme = (REPO / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("dvc exp show --drop"))
    keep = line.split("--keep ", 1)[1].strip().strip("'")
    shown = dvc(tiny_project, "exp", "show", "--drop", ".*", "--keep", keep)
    for out in (dvc(tiny_project, "metrics", "show"), shown):
        widths = [len(x) for x in out.splitlines()]
        assert max(widths) <= 160, out
    for column in ("accuracy", "loss_up_probe", "probe.C", "model.name"):
        assert column in shown, shown


def test_compare_reads_steps_as_numbers_keeps_the_newest_and_skips_unfinished() -> None:
    from emergent_pos.compare import collect, output_paths

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
    assert output_paths(None, "model.revision") == (
        Path("plots/compare/model.revision.png"),
        Path("plots/compare/model.revision.json"),
    )
