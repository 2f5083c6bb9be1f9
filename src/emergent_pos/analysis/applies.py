"""A mechanism stage with nothing to measure on a model completes and says so in its outputs.

A failing stage ends `dvc repro`, and a failed `dvc exp run` records no experiment, so
a sweep over models could not finish as soon as one model lacked what a stage measures
(attention heads in a state-space model). Such a stage writes its data files with
``"applies": false`` and the reason, a figure that says the same, logs one line and
exits 0.
"""

from __future__ import annotations

import logging
from pathlib import Path

from emergent_pos.analysis import plots
from emergent_pos.io.files import save_figure, write_json

logger = logging.getLogger(__name__)


def not_applicable(stage: str, model: str, reason: str, data: list[Path], figures: list[Path]) -> None:
    """Write ``stage``'s outputs for a model it does not apply to."""
    logger.info("stage %s does not apply to %s: %s", stage, model, reason)
    for path in data:
        write_json(path, {"applies": False, "stage": stage, "model": model, "reason": reason})
    for path in figures:
        save_figure(plots.notice(f"{model}: stage {stage} does not apply", reason), path)
