"""Sweeps over many machines with git and DVC only (scripts/sweep_worker.sh).

A bare git repository and a directory DVC remote stand for the fleet's shared remotes;
clone A (the finished tiny project, its own cache) and clone B (a plain `git clone`, an
empty cache) for two machines. B's probe-only experiment pulls the model, prompts and
activations that A computed instead of recomputing them; a third clone pulls every
experiment and compares them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import BIN, ENV, REPO, copy_finished, dvc, ran, sh

pytestmark = pytest.mark.slow

UPSTREAM = {"model", "dictionary", "prompts", "activations"}
# The worker uses the test venv's dvc and python (first on PATH) instead of bootstrapping
# a .venv; names come from the overrides alone, whatever the environment running the tests.
WORKER_ENV = {k: v for k, v in ENV.items() if not k.startswith(("SWEEP_", "SLURM_"))} | {"SWEEP_SKIP_SETUP": "1"}


def worker(clone: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(clone / "scripts/sweep_worker.sh"), *args],
        cwd=clone,
        env=WORKER_ENV | (env or {}),
        capture_output=True,
        text=True,
        timeout=600,
    )


def succeeded(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.stdout


def one_line_failure(proc: subprocess.CompletedProcess, needle: str) -> str:
    """The worker failed with exactly one line of its own and nothing else."""
    assert proc.returncode == 1, f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sweep_worker: error: "), proc.stderr
    assert needle in lines[0], lines[0]
    return lines[0]


def cached(project: Path, md5: str) -> bool:
    return (project / ".dvc/cache/files/md5" / md5[:2] / md5[2:]).is_file()


def out_md5(lock: dict, stage: str) -> str:
    (out,) = lock["stages"][stage]["outs"]
    return out["md5"]


def exp_refs(git_remote: Path) -> dict[str, str]:
    """Experiment name -> commit, as the shared git remote holds them."""
    listing = sh(git_remote, "git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps")
    return {ref.rsplit("/", 1)[1]: sha for sha, ref in (line.split() for line in listing.splitlines())}


def runs(store: Path) -> int:
    return sum(1 for p in (store / "runs").rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def fleet(tiny_project: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shared remotes, clone A (pushed, with its cache) and clone B (no data)."""
    root = tmp_path_factory.mktemp("sweep")
    origin, store = root / "origin.git", root / "store"
    sh(root, "git", "init", "-q", "--bare", "--initial-branch=main", str(origin))
    a = copy_finished(tiny_project, root / "a")
    shutil.copytree(REPO / "scripts", a / "scripts")
    sh(a, "git", "branch", "-M", "main")
    sh(a, "git", "remote", "add", "origin", str(origin))
    dvc(a, "remote", "add", "-d", "store", str(store))
    sh(a, "git", "add", "scripts", ".dvc/config")
    sh(a, "git", "commit", "-qm", "sweep scripts and the shared DVC remote")
    sh(a, "git", "push", "-q", "-u", "origin", "main")
    dvc(a, "push", "--run-cache")
    b = root / "b"
    sh(root, "git", "clone", "-q", str(origin), str(b))
    assert not (b / ".dvc/cache").exists() and not (b / "data/model").exists()
    return {"root": root, "origin": origin, "store": store, "a": a, "b": b}


def test_worker_pulls_upstream_stages_instead_of_recomputing(fleet: dict[str, Path]) -> None:
    b, store = fleet["b"], fleet["store"]
    runs_before = runs(store)
    # `report` (passed on to `dvc exp run`) keeps the run to the probes and their report
    log = succeeded(worker(b, "-S", "probe.C=0.5", "report"))
    assert ran(log) == ["check", "probes", "report"], log
    assert not UPSTREAM & set(ran(log))
    for stage in sorted(UPSTREAM):
        assert f"Pulling data for stage: '{stage}'" in log, log
    # the activations came from the DVC remote into B's own cache, file by file
    lock = yaml.safe_load((b / "dvc.lock").read_text())  # the baseline's: the worker reset B
    manifest = out_md5(lock, "activations")
    assert cached(b, manifest)
    files = json.loads((b / ".dvc/cache/files/md5" / manifest[:2] / manifest[2:]).read_text())
    h5 = [f for f in files if f["relpath"].endswith(".h5")]
    assert h5 and all(cached(b, f["md5"]) for f in h5), files
    assert {f["relpath"].split("/")[0] for f in h5} == {"train", "val", "heldout"}
    assert not cached(b, out_md5(lock, "probes"))  # the baseline's probes were never needed
    # the experiment is on the git remote, its outputs and run-cache entries on the DVC remote
    (name,) = exp_refs(fleet["origin"])
    assert name.startswith("probe.C-0.5-"), name
    assert runs(store) > runs_before
    assert sh(b, "git", "status", "--porcelain", "--untracked-files=no") == ""


def test_second_machine_and_refusals(fleet: dict[str, Path]) -> None:
    a, b = fleet["a"], fleet["b"]
    log = succeeded(worker(a, "--set-param=probe.C=2.0", "report"))
    assert ran(log) == ["check", "probes", "report"], log  # A has every upstream output
    assert len(exp_refs(fleet["origin"])) == 2
    # the same overrides again: refused before running anything
    one_line_failure(worker(b, "-S", "probe.C=0.5", "report"), "already on 'origin'")
    # uncommitted changes, an unknown git remote, no dvc: one line each, nothing run
    (b / "params.yaml").write_text((b / "params.yaml").read_text() + "\n")
    try:
        one_line_failure(worker(b, "-S", "probe.C=0.5"), "uncommitted changes")
    finally:
        sh(b, "git", "checkout", "--", "params.yaml")
    one_line_failure(worker(b, "-S", "probe.C=0.5", env={"SWEEP_GIT_REMOTE": "fleet"}), "no git remote 'fleet'")
    bare = {"PATH": "/usr/bin:/bin"}  # bash and git, no venv
    if not shutil.which("dvc", path=bare["PATH"]):
        one_line_failure(worker(b, "-S", "probe.C=0.5", env=bare), "no dvc or python on PATH")


def test_slurm_task_reuses_what_the_fleet_ran(fleet: dict[str, Path]) -> None:
    """scripts/sweep.slurm as array task 1: its own scratch clone, the overrides of the
    sweep file's second experiment line; B ran the same stages, so nothing runs again."""
    root = fleet["root"]
    sweep = root / "sweep.txt"
    sweep.write_text("# probe-only sweep\n\nprobe.C=2.0 report\nprobe.C=0.5 report\n")
    slurm = {
        "SLURM_SUBMIT_DIR": str(fleet["a"]),
        "SLURM_ARRAY_JOB_ID": "7",
        "SLURM_ARRAY_TASK_ID": "1",
        "SWEEP_FILE": str(sweep),
        "TMPDIR": str(root / "scratch"),
    }
    (root / "scratch").mkdir()
    proc = subprocess.run(
        ["bash", str(fleet["a"] / "scripts/sweep.slurm")],
        cwd=root,
        env=WORKER_ENV | slurm,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = succeeded(proc)
    assert ran(log) == [], log
    assert "Stage 'probes' is cached - skipping run" in log, log
    assert [n for n in exp_refs(fleet["origin"]) if n.startswith("t1-probe.C-0.5-")], exp_refs(fleet["origin"])
    assert not list((root / "scratch").glob("emergent-pos-*"))  # the task's clone is removed


def test_one_machine_compares_every_experiment(fleet: dict[str, Path]) -> None:
    collector = fleet["root"] / "collector"
    sh(fleet["root"], "git", "clone", "-q", str(fleet["origin"]), str(collector))
    dvc(collector, "exp", "pull", "origin")
    names = exp_refs(fleet["origin"])
    listing = json.loads(dvc(collector, "exp", "show", "--json"))
    found = {}
    for commit in listing:
        for group in commit.get("experiments") or []:
            for exp in group["revs"]:
                data = exp["data"]
                c = data["params"]["params.yaml"]["data"]["probe"]["C"]
                found[exp["name"]] = (c, data["metrics"]["metrics/probes.json"]["data"]["accuracy"])
    assert sorted(found) == sorted(names)
    assert sorted(c for c, _ in found.values()) == [0.5, 0.5, 2.0]
    assert all(0 <= acc <= 1 for _, acc in found.values())
    # `dvc exp pull` brought each experiment's outputs from the DVC remote too
    for name, rev in names.items():
        lock = yaml.safe_load(sh(collector, "git", "show", f"{rev}:dvc.lock"))
        assert cached(collector, out_md5(lock, "probes")), name
    out = fleet["root"] / "compare" / "c"
    proc = subprocess.run(  # compare calls the dvc on PATH: the venv's (ENV)
        [str(BIN / "emergent-pos"), "compare", "probe.C", "--out", str(out), "--root", str(collector)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    points = json.loads(out.with_suffix(".json").read_text())["points"]
    assert [p["x"] for p in points] == [0.5, 1.0, 2.0]  # the newest of the two probe.C=0.5 runs
    assert {p["experiment"] for p in points if p["x"] != 1.0} < set(names)
    assert out.with_suffix(".png").stat().st_size > 0
