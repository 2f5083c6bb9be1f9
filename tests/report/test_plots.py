"""Plot functions return figures and choose no backend, so notebooks keep inline plots."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
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
    rows = [
        {"layer": i, "probe": 0.5, "probe_ci_low": 0.4, "probe_ci_high": 0.6, "probe_balanced": 0.5}
        | {"position_control": 0.3, "position_and_space": 0.3, "position_only": 0.2, "majority": 0.1}
        for i in range(3)
    ]
    transfer = {"0": {"layer_00": 0.5, "layer_01": 0.9, "position_only": 0.4}, "1": {"layer_00": 0.2, "layer_01": 0.3}}
    transfer["1"]["position_only"] = 0.1
    figures = [
        plots.key_plot(y, pred, pos, 3, "key"),
        plots.accuracy_by_layer(rows, "acc"),
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
