"""README and docs/ say only what is true: links resolve, shell commands run, numbers come from data.

Every fenced ``bash`` block of README.md and docs/*.md is run, in order, on a private copy
of the finished tiny project (one copy per page), unless a command matches an exemption
below that names why it cannot run here. Every decimal number in README's prose and
tables is found, at the same rounding, in a committed JSON file (metrics, plots,
benchmark results), so a re-run that changes a figure fails here until README follows.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from helpers import ENV, REPO, copy_finished

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

EXEMPT = {
    r"^\./run\.sh ": "the quick start itself: CI runs `./run.sh test` on a fresh clone",
    r"^source \.venv/bin/activate": "the tests already run inside the venv",
    r"model\.name=(gpt2|EleutherAI|meta-llama|Qwen|google|state-spaces|/)": "needs a hub model's weights",
    r"^(sbatch|srun|salloc)\b|slurm": "needs a SLURM cluster",
    r"(?i)placement|compute_dtype|cuda": "needs a GPU",
    r"^dvc (remote|push|pull|fetch)\b": "needs a remote (a bucket or shared disk)",
    r"^dvc (queue start|exp run --queue)|^dvc queue ": "a sweep over many runs: minutes each even on the tiny project",
    r"^pip install": "installs packages from the registry",
    r"^python benchmarks/": "benchmarks time real models for minutes",
    r"^git clone ": "the clone is where the tests already run",
    r"^scripts/sweep_worker\.sh|^git (push|pull)\b": "needs the git remote that the machines of a sweep share",
    r"^emergent-pos compare model\.revision": "plots the checkpoint sweep's experiments, which only the queue runs",
}
"""Command pattern -> why it is not run here (each must be used by some page)."""


def fenced(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def commands(block: str) -> list[str]:
    """A block's commands: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [c.strip() for c in joined.splitlines() if c.strip() and not c.strip().startswith("#")]


def exemption(command: str) -> str | None:
    return next((p for p in EXEMPT if re.search(p, command)), None)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def prose(text: str) -> str:
    """Text outside code blocks, inline code, links' targets and image paths."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.sub(r"\]\([^)]*\)", "]", text)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: link to {target}: no such file"
        assert REPO in dest.parents or dest == REPO, f"{page.name}: {target} leaves the repository"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{page.name}: link to {target}: no such heading"


def test_every_exemption_is_used_and_pages_are_short() -> None:
    used = {exemption(c) for page in PAGES for b in fenced(page.read_text(), "bash") for c in commands(b)}
    assert set(EXEMPT) <= used, f"unused exemptions: {set(EXEMPT) - used}"
    assert len((REPO / "README.md").read_text().splitlines()) <= 300


def run_shell_blocks(page: Path, tiny_project: Path, parent: Path) -> None:
    """Run the page's bash blocks, in order, on a private copy of the finished tiny project."""
    blocks = [[c for c in commands(b) if not exemption(c)] for b in fenced(page.read_text(), "bash")]
    blocks = [b for b in blocks if b]
    if not blocks:
        return
    root = copy_finished(tiny_project, parent)
    # `dvc plots show` reads the page template that `run.sh` generates
    subprocess.run([str(Path(ENV["PATH"].split(":")[0]) / "python"), "-m", "emergent_pos.report.html_template"],
                   cwd=root, env=ENV, check=True, capture_output=True)  # fmt: skip
    for block in blocks:
        script = "set -euo pipefail\n" + "\n".join(block)
        proc = subprocess.run(["bash", "-c", script], cwd=root, env=ENV, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{page.name}:\n{script}\n---\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"


def test_readme_shell_blocks_run_on_the_tiny_project(tiny_project: Path, tmp_path: Path) -> None:
    """README's; docs/*.md's run in tests/test_doc_pages.py (another file, so xdist can run them beside these)."""
    run_shell_blocks(REPO / "README.md", tiny_project, tmp_path)


def committed_numbers() -> list[float]:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "metrics", "plots", "benchmarks/results"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.split()
    out: list[float] = []

    def walk(x: object) -> None:
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
            out.append(float(x))

    for f in files:
        if f.endswith(".json"):
            walk(json.loads((REPO / f).read_text()))
    return out


def test_readme_numbers_come_from_committed_data() -> None:
    """A decimal in README is some committed value at README's rounding (or as a percentage,
    or a ratio of two committed values for "x times")."""
    values = committed_numbers()
    text = prose((REPO / "README.md").read_text())
    missing = []
    for literal in sorted(set(re.findall(r"(?<![\w.])[+-]?\d+\.\d+(?![\w.])", text))):
        digits = len(literal.split(".")[1])
        want = float(literal)
        if not any(round(v, digits) == want or round(100 * v, digits) == want for v in values):
            missing.append(literal)
    assert not missing, f"README quotes numbers no committed JSON holds: {missing}"
