"""Where the probes stage's outputs live, and the columns of its prediction tables.

``data/probes/`` holds one probe per hook (``{hook}.npz``, see ``linear.py``), the fit
facts of every layer (``fits.json``) and two tables, one row per (point, layer), long
format: ``predictions_val.parquet`` (validation words, every evaluation set) and
``predictions_heldout.parquet`` (new prompts of training words), with these columns:

* per point: ``point`` (index among the split's points), ``prompt_id``, ``prefix_id``,
  ``n_units``, ``position``, ``confound``, the label (``label``; for an ordinal scheme the
  binned count, and ``count`` the count itself), ``word`` (its type), ``starts_word``,
  each baseline's prediction and each control's label (``position_control_label`` on
  validation, ``word_control_label`` on held-out prompts); an ordinal scheme adds the
  mean-count baselines (``position_mean``, ``confound_mean``);
* per layer: ``layer`` (0 = embeddings), ``hook``, ``probe`` (the probe's prediction),
  each control probe's prediction (``position_control``, ``word_control``) and, for an
  ordinal scheme, ``regression`` (the ridge probe's count).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from emergent_pos.dataset.labels import LABEL, Points

PROBES_DIR = Path("data/probes")
PREDICTIONS = "predictions_val.parquet"
HELDOUT_PREDICTIONS = "predictions_heldout.parquet"
FITS = "fits.json"

BASELINES = ("majority", "position_only", "confound_only", "position_and_space")
MEAN_BASELINES = ("position_mean", "confound_mean")
"""Regression baselines of an ordinal scheme: the training mean count at the point's position,
or at its confound value."""
POSITION_CONTROL, WORD_CONTROL = "position_control", "word_control"
LAYER, HOOK, PROBE, REGRESSION = "layer", "hook", "probe", "regression"


def label_column(control: str) -> str:
    """The per-point column holding a control's labels."""
    return f"{control}_label"


def probe_path(hook: str, root: str | Path = PROBES_DIR) -> Path:
    return Path(root) / f"{hook}.npz"


def ridge_path(hook: str, root: str | Path = PROBES_DIR) -> Path:
    """An ordinal scheme's ridge probe of ``hook`` (``regression.RidgeProbe``)."""
    return Path(root) / f"{hook}.ridge.npz"


def point_frame(points: Points, columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per-point columns: who the point is, its label, and label-like columns (baselines...)."""
    return pd.DataFrame(
        {
            "point": np.arange(len(points)),
            "prompt_id": points.prompt_id,
            "prefix_id": points.prefix_id,
            "n_units": points.n_units,
            "position": points.position,
            "confound": points.confound,
            LABEL: points.label,
            "count": points.count,
            "word": points.word,
            "starts_word": points.starts_word,
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
