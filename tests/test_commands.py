"""`emergent-pos`: the summary is README's headline table; both subcommands fail in one line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

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


def test_summary_of_a_revision_and_bad_revision(tiny_project: Path) -> None:
    assert (
        emergent_pos("summary", "--rev", "HEAD", cwd=tiny_project).stdout
        == emergent_pos("summary", cwd=tiny_project).stdout
    )
    proc = emergent_pos("summary", "--rev", "no-such-rev", cwd=tiny_project)
    assert proc.returncode == 2 and proc.stderr.startswith("error: 'no-such-rev' is neither a git revision")


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


def test_compare_plots_a_metric_against_a_param_across_experiments(project_copy: Path) -> None:
    """A real experiment beside its baseline commit: the per-layer values and intervals come
    from each commit's metrics file (``dvc exp show --json`` leaves lists out)."""
    root = project_copy
    dvc(root, "exp", "run", "report", "-S", "probe.C=0.01", "-n", "small-c")
    proc = emergent_pos("compare", "probe.C", "--layers", "--out", "plots/compare/c", cwd=root)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((root / "plots/compare/c.json").read_text())
    assert [p["x"] for p in data["points"]] == [0.01, 1.0] and data["points"][0]["experiment"] == "small-c"
    small, base = data["points"]
    want = json.loads(subprocess.run(["git", "show", "HEAD:metrics/probes.json"], cwd=root, capture_output=True).stdout)
    assert base["metrics"]["accuracy"] == want["accuracy"] and base["intervals"]["accuracy"] == want["accuracy_ci"]
    assert base["layers"]["1"]["value"] == want["layers"][1]["accuracy"]
    assert base["layers"]["1"]["ci_low"] == want["layers"][1]["accuracy_ci_low"]
    assert small["metrics"] != base["metrics"] and set(small["layers"]) == set(base["layers"])
    assert (root / "plots/compare/c.png").stat().st_size > 10_000
    bad = emergent_pos("compare", "probe.nothing", cwd=root)
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "error: no committed experiment has the param 'probe.nothing' (see `dvc exp show`)"
    )


def test_compare_reads_step_revisions_as_numbers_and_keeps_the_newest_duplicate() -> None:
    from emergent_pos.compare import entries, place

    def entry(name: str, revision: str, time: str) -> dict:
        params = {"params.yaml": {"data": {"model": {"revision": revision}}}}
        return {"rev": name * 5, "name": name, "data": {"timestamp": time, "params": params}, "error": None}

    exps = [
        entry("b", "step100", "2026-01-02"),
        entry("c", "step10", "2026-01-03"),
        entry("d", "step100", "2026-01-04"),
    ]
    listing = [
        {"rev": "workspace", "data": {"params": {}}, "experiments": None},
        {**entry("main", "main", "2026-01-01"), "experiments": [{"revs": [e]} for e in exps]},
    ]
    points, notes = place(entries(listing, "model.revision"))
    assert [(p.experiment, p.x) for p in points] == [("c", 10.0), ("d", 100.0)]
    assert any("not a number" in n for n in notes) and any("d shown" in n for n in notes)
