"""Plot functions return figures and choose no backend, so notebooks keep inline plots."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from emergent_pos.report import plots


def test_importing_the_package_sets_no_matplotlib_backend() -> None:
    code = (
        "import matplotlib, emergent_pos.report.plots, emergent_pos.model.plots, emergent_pos.probes.runner; "
        "import matplotlib.pyplot; print(matplotlib.rcParams._get_backend_or_none())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PATH": ""})
    assert out.stdout.strip() == "None"


def test_plot_functions_return_figures() -> None:
    rng = np.random.default_rng(0)
    y, pred, pos = rng.integers(0, 3, 60), rng.integers(0, 3, 60), rng.integers(10, 15, 60)
    table = pd.DataFrame(
        {"layer": range(3), "accuracy": 0.5, "accuracy_ci_low": 0.4, "accuracy_ci_high": 0.6}
        | {"balanced_accuracy": 0.45, "balanced_ci_low": 0.4, "balanced_ci_high": 0.5, "position_control_accuracy": 0.3}
    )
    baselines = {"position_only": 0.2, "confound_only": 0.25, "position_and_space": 0.3, "majority": 0.1}
    transfer = {
        k: {"accuracy": {"0": a, "1": b}, "ci": {"0": [a - 0.1, a + 0.1], "1": [b - 0.1, b + 0.1]}}
        | {"position_only": 0.2}
        for k, a, b in (("0", 0.5, 0.9), ("1", 0.2, 0.3))
    }
    figures = [
        plots.key_plot(y, pred, pos, 3, "key"),
        plots.accuracy_by_layer(table, baselines, "acc"),
        plots.confusion(np.eye(3), "confusion"),
        plots.prefix_transfer(transfer, "transfer"),
        plots.count_vs_countdown(
            {
                "5": {
                    "predicted_given_true": np.eye(5, 7).tolist(),
                    "count": {"agreement": 1.0, "ci_low": 1.0, "ci_high": 1.0},
                    "countdown": {"agreement": 0.0, "ci_low": 0.0, "ci_high": 0.0},
                    "verdict": "count",
                }
            },
            7,
            "count",
        ),
    ]
    assert all(isinstance(f, Figure) for f in figures)
    assert [t.get_text() for t in figures[1].axes[0].get_xticklabels()] == ["0", "1", "2"]


def test_the_accuracy_figure_takes_the_api_table_and_refuses_another() -> None:
    """The figure draws what `Pipeline.summary()` returns (layer as a column); a table without the
    headline columns is refused in words, not drawn as empty axes."""
    table = pd.DataFrame({"layer": [0, 1], "accuracy": [0.5, 0.9], "accuracy_ci_low": [0.4, 0.85]})
    with pytest.raises(ValueError, match="accuracy_ci_high"):
        plots.accuracy_by_layer(table, {}, "acc")
    table["accuracy_ci_high"] = [0.6, 0.95]
    fig = plots.accuracy_by_layer(table, {"position_only": 0.3}, "acc")
    lines = [line for line in fig.axes[0].get_lines() if len(line.get_xdata()) == 2]
    assert [list(line.get_ydata()) for line in lines][0] == [0.5, 0.9]
    assert len(fig.axes[0].collections) == 1  # the interval is drawn, as the legend says
    records = plots.series_records(table, {"position_only": 0.3})
    assert {"ci_low", "ci_high"} <= set(records[0]) and len(records) == 4
