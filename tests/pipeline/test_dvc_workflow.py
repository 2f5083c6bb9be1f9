"""The DVC workflow users live in: remotes (directory and S3 on loopback), diffs, offline plots."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import helpers
from helpers import copy_finished, ran, write_params

pytestmark = pytest.mark.slow

AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def project(tiny_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the finished, committed tiny project."""
    return copy_finished(tiny_project, tmp_path_factory.mktemp("workflow"))


def dvc(cwd: Path, *args: str) -> str:
    return helpers.dvc(cwd, *args, env=AWS)


def sh(cwd: Path, *args: str) -> str:
    return helpers.sh(cwd, *args, env=AWS)


def _objects(cache: Path) -> set[str]:
    return {str(p.relative_to(cache)) for p in (cache / "files").rglob("*") if p.is_file()} if cache.exists() else set()


def _roundtrip(project: Path, tmp_path: Path, remote: list[list[str]]) -> None:
    """push --run-cache; in a fresh clone pull one layer file alone, then repro --pull runs nothing."""
    for args in remote:
        dvc(project, *args)
    sh(project, "git", "commit", "-qm", "remote", ".dvc/config")  # the remote is shared, its secrets are not
    dvc(project, "push", "--run-cache")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(project), str(clone))
    for args in remote:  # credentials live in config.local, which is never committed
        if "--local" in args:
            dvc(clone, *args)
    dvc(clone, "pull", "data/activations/val/blocks.0.hook_resid_post.h5")
    assert (clone / "data/activations/val/blocks.0.hook_resid_post.h5").is_file()
    assert not (clone / "data/activations/val/blocks.0.hook_resid_pre.h5").exists()
    assert not (clone / "data/model").exists()
    objects = _objects(clone / ".dvc/cache")
    assert len([o for o in objects if not o.endswith(".dir")]) == 1, objects  # that file, plus the manifest
    assert ran(dvc(clone, "repro", "--pull")) == []
    assert (clone / "data/probes/predictions_val.parquet").exists()
    assert "up to date" in dvc(clone, "status")


def _forget(project: Path, name: str) -> None:
    (project / ".dvc/config.local").unlink(missing_ok=True)
    if name not in dvc(project, "remote", "list"):
        return
    dvc(project, "remote", "remove", name)
    sh(project, "git", "commit", "-qm", f"drop {name}", ".dvc/config")


def test_directory_remote(project: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    _roundtrip(project, tmp_path, [["remote", "add", "-f", "-d", "store", str(store)]])
    _forget(project, "store")


def test_s3_remote_on_loopback(project: Path, tmp_path: Path) -> None:
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer("127.0.0.1", 0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket="dvc-test")
        _roundtrip(
            project,
            tmp_path,
            [
                ["remote", "add", "-f", "-d", "s3store", "s3://dvc-test/store"],
                ["remote", "modify", "s3store", "endpointurl", url],
                ["remote", "modify", "--local", "s3store", "access_key_id", "testing"],
                ["remote", "modify", "--local", "s3store", "secret_access_key", "testing"],
            ],
        )
    finally:
        server.stop()
        _forget(project, "s3store")


def test_metrics_diff_between_commits(project: Path) -> None:
    write_params(project / "params.yaml", probe={"C": 0.01})
    assert ran(dvc(project, "repro", "report")) == ["check", "probes", "report"]
    sh(project, "git", "add", "-A")
    sh(project, "git", "commit", "-qm", "C=0.01")
    diff = json.loads(dvc(project, "metrics", "diff", "HEAD~1", "--json"))
    assert diff["metrics/probes.json"]["accuracy"]["diff"] != 0
    params = json.loads(dvc(project, "params", "diff", "HEAD~1", "--json"))
    assert params["params.yaml"]["probe.C"]["old"] == 1.0 and params["params.yaml"]["probe.C"]["new"] == 0.01


def test_plots_render_offline(project: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("Debian's chromium is not installed (./run.sh test installs it where apt-get is usable)")
    sh(project, sys.executable, "-m", "emergent_pos.report.html_template", ".dvc/plots_template.html")
    dvc(project, "plots", "show", "-o", str(tmp_path / "offline"))
    page = tmp_path / "offline" / "index.html"
    assert "cdn.jsdelivr" not in page.read_text() and "<script" in page.read_text()
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--proxy-server=127.0.0.1:9",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = re.sub(r"<script.*?</script>", "", dom.stdout, flags=re.S)  # drop the inlined bundle
    assert html.count('class="vega-embed') >= 2 and html.count("<svg") + html.count("<canvas") >= 2, html[:3000]
    assert "Error" not in html
    assert ".png" in html  # the seaborn figures are image plots beside the page
