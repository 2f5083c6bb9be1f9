"""Entry-point plumbing shared by the stage scripts: logging, run-time knobs, one-line errors."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from emergent_pos.config import ParamError
from emergent_pos.errors import UserError

PARAMS = "params.yaml"

# Failures a user can fix; they print one line and exit 2 instead of a traceback.
USER_ERRORS = (UserError, OSError)


def run(main: Callable[[], None]) -> None:
    """Run a stage's ``main`` with logging set up and user errors reported in one line.

    Figures are rendered off-screen (Agg) here, at the entry point, never at import, so
    a notebook that imports the package keeps its inline backend.
    """
    os.environ.setdefault("MPLBACKEND", "Agg")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        main()
    except USER_ERRORS as err:
        print(f"error: {err}".replace("\n", " "), file=sys.stderr)
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
