"""Every shell command of docs/*.md runs on the tiny project (see tests/test_docs.py for the rules)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_docs import run_shell_blocks

from helpers import REPO


@pytest.mark.parametrize("page", sorted((REPO / "docs").glob("*.md")), ids=lambda p: p.name)
def test_shell_blocks_run_on_the_tiny_project(page: Path, tiny_project: Path, tmp_path: Path) -> None:
    run_shell_blocks(page, tiny_project, tmp_path)
