"""Files: atomic outputs (temporary name, then rename) and content hashes.

A stage killed at any moment leaves either the previous complete file or none, never a
file that looks complete; leftovers carry a ``.tmp-`` prefix that readers never match.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from emergent_pos.errors import UserError

TMP_PREFIX = ".tmp-"


@contextmanager
def atomic_path(target: str | Path, directory: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``target``; on success rename it onto ``target``.

    The temporary file or directory is removed if the body raises. An existing target is
    replaced only after the new one is complete (a directory target is swapped out).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{target.name}-", dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{target.name}-", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if directory:
            if target.exists():
                shutil.rmtree(target)
        else:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            tmp.chmod(0o644)
        os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data: Any) -> None:
    """Pretty, key-sorted JSON so that diffs between commits stay readable."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """A stage's input table; a missing or corrupt file is a one-line error naming it."""
    import pyarrow

    try:
        return pd.read_parquet(path, columns=columns)
    except (OSError, pyarrow.ArrowException) as err:
        reason = " ".join(str(err).split())[:200]
        raise UserError(
            f"cannot read {path} ({type(err).__name__}: {reason}): rerun the stage that writes it "
            "(`dvc repro`), or `dvc checkout` it"
        ) from err


def write_parquet(path: str | Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file: activations record the prompts' hash and readers check it."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_figure(fig: Any, path: str | Path) -> None:
    """PNG without a version stamp (identical data, identical bytes); the figure is closed."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
