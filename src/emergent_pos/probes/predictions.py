"""Where the probes stage's outputs live, and the validation predictions table's columns.

``data/probes/`` holds one probe per hook (``{hook}.npz``, see ``linear.py``), the fit
facts of every layer (``fits.json``) and ``predictions_val.parquet``: one row per
(validation point, layer), long format, with these columns:

* per point: ``point`` (index among the validation points), ``prompt_id``,
  ``prefix_id``, ``position``, the label (``word_index``), ``starts_word``, each
  baseline's prediction and, with the control task, ``control_label``;
* per layer: ``layer`` (0 = embeddings), ``hook``, ``probe`` (the probe's prediction)
  and, with the control task, ``control`` (the control probe's prediction).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from emergent_pos.dataset.labels import LABEL, Points

PROBES_DIR = Path("data/probes")
PREDICTIONS = "predictions_val.parquet"
FITS = "fits.json"

BASELINES = ("majority", "position_only", "position_and_space")
CONTROL_LABEL = "control_label"
LAYER, HOOK, PROBE, CONTROL = "layer", "hook", "probe", "control"


def probe_path(hook: str, root: str | Path = PROBES_DIR) -> Path:
    return Path(root) / f"{hook}.npz"


def point_frame(val: Points, columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per-point columns: who the point is, its label, and label-like columns (baselines...)."""
    return pd.DataFrame(
        {
            "point": np.arange(len(val)),
            "prompt_id": val.prompt_id,
            "prefix_id": val.prefix_id,
            "position": val.position,
            LABEL: val.label,
            "starts_word": val.starts_word,
            **columns,
        }
    )


def long_table(points: pd.DataFrame, layers: list[tuple[int, str, dict[str, np.ndarray]]]) -> pd.DataFrame:
    """The per-point frame repeated for each (layer, hook, per-layer prediction columns)."""
    parts = [points.assign(**{LAYER: layer, HOOK: hook}, **cols) for layer, hook, cols in layers]
    return pd.concat(parts, ignore_index=True)


def at_layer(pred: pd.DataFrame, layer: int) -> pd.DataFrame:
    """One layer's rows, in point order."""
    return pred[pred[LAYER] == layer].reset_index(drop=True)


def layers(pred: pd.DataFrame) -> list[int]:
    return sorted(int(v) for v in pred[LAYER].unique())
