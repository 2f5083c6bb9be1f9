"""Entry-point plumbing shared by the stage scripts: logging, run-time knobs, one-line errors.

Every stage's ``main`` runs through ``run``: it sweeps the temporary files an earlier,
interrupted run of the same stage left beside its outputs, and turns every failure a
user can fix into one ``error:`` line and exit code 2, here and nowhere else.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from emergent_pos.config import ParamError
from emergent_pos.errors import UserError
from emergent_pos.io.files import TMP_PREFIX

PARAMS = "params.yaml"
PIPELINE = "dvc.yaml"

logger = logging.getLogger(__name__)


def stage_outputs(stage: str, pipeline: str | Path = PIPELINE) -> list[Path]:
    """Every path a stage of ``dvc.yaml`` declares as an output (outs, metrics, plots)."""
    try:
        spec = (yaml.safe_load(Path(pipeline).read_text()) or {}).get("stages", {}).get(stage) or {}
    except (OSError, yaml.YAMLError):
        return []
    paths = []
    for kind in ("outs", "metrics", "plots"):
        for entry in spec.get(kind, []):
            paths += [Path(p) for p in (entry if isinstance(entry, dict) else [entry])]
    return paths


def sweep_temporaries(outputs: list[Path]) -> int:
    """Remove ``.tmp-*`` leftovers of atomic writes beside and inside the given outputs."""
    found: list[Path] = []
    for out in outputs:
        found += out.parent.glob(f"{TMP_PREFIX}{out.name}*")
        if out.is_dir():
            found += out.rglob(f"{TMP_PREFIX}*")
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return len(found)


def user_message(err: BaseException) -> str | None:
    """The one-line message of a failure the user can fix; None for a bug (traceback)."""
    if isinstance(err, UserError | OSError):
        return str(err)
    if isinstance(err, MemoryError):
        return "out of memory: use fewer or shorter prompts, a smaller model, or a machine with more memory"
    arrow = sys.modules.get("pyarrow")
    if arrow is not None and isinstance(err, arrow.ArrowException):
        return f"cannot read a table ({err}): rerun the stage that writes it (`dvc repro`)"
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(err, torch.OutOfMemoryError):
        return f"out of device memory ({str(err).splitlines()[0]}): lower EMERGENT_POS_BATCH_TOKENS"
    return None


def print_one_line(err: BaseException) -> None:
    """Print a failure the user can fix as one ``error:`` line; re-raise a bug (traceback)."""
    message = user_message(err)
    if message is None:
        raise err
    print(f"error: {message}".replace("\n", " "), file=sys.stderr)


def run(main: Callable[[], None]) -> None:
    """Run a stage's ``main`` with logging set up and user errors reported in one line.

    Figures are rendered off-screen (Agg) here, at the entry point, never at import, so
    a notebook that imports the package keeps its inline backend.
    """
    stage = Path(sys.argv[0]).stem
    if sys.argv[1:]:  # a stage takes no arguments: it must not run the whole stage on a typo'd flag
        usage = f"usage: python stages/{stage}.py  (no arguments: params come from {PARAMS}; run `dvc repro {stage}`)"
        if sys.argv[1:] in (["-h"], ["--help"]):
            print(((sys.modules["__main__"].__doc__ or "").strip() + "\n\n" + usage).strip())
            sys.exit(0)
        print(f"{usage}\nerror: unexpected argument {sys.argv[1]!r}", file=sys.stderr)
        sys.exit(2)
    os.environ.setdefault("MPLBACKEND", "Agg")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        swept = sweep_temporaries(stage_outputs(stage))
        if swept:
            logger.info("removed %d temporary file(s) left by an interrupted run", swept)
        main()
    except BaseException as err:
        print_one_line(err)
        if getattr(err, "hard_exit", False):
            sys.stderr.flush()
            os._exit(2)  # a library holds a broken file handle that would crash the interpreter at exit
        sys.exit(2)


def env_int(name: str, default: int, minimum: int = 1) -> int:
    """Run-time knobs (batch size) come from the environment: they must not invalidate results."""
    raw = os.environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ParamError(name, raw, f"must be an integer >= {minimum}")
    return value
