"""Stage `report`: every metric, computed once from the probes' predictions, and the figures.

metrics/probes.json holds the headline (scheme, best layer, its accuracy and balanced
accuracy, the position-only and best baselines, selectivity; README's per-layer table in
a list; R² for an ordinal scheme); data/report/probes.json every number with its
interval (both controls, fit facts, prefix transfer, count vs countdown, regression),
data/report/report.json macro-F1 and per-label accuracy, data/report/ the (position,
label) breakdowns and every layer's count-vs-countdown test; plots/ the figures and the
data of `dvc plots`. The computation is report/build.py's.
"""

import json
import logging
from pathlib import Path

from emergent_pos.config import read_params, section
from emergent_pos.io.cli import PARAMS, run
from emergent_pos.io.files import read_parquet, save_figure, write_json
from emergent_pos.model.load import read_card
from emergent_pos.probes.predictions import FITS, HELDOUT_PREDICTIONS, PREDICTIONS, PROBES_DIR
from emergent_pos.report.build import build
from emergent_pos.report.config import ReportConfig

logger = logging.getLogger("stages.report")
OUT = Path("plots/report")
DATA = Path("data/report")
HEADLINE = Path("metrics/probes.json")


def main() -> None:
    cfg = section(read_params(PARAMS), "report", ReportConfig)
    card = read_card()
    fits = json.loads((PROBES_DIR / FITS).read_text())
    everything = read_parquet(PROBES_DIR / PREDICTIONS)
    heldout = read_parquet(PROBES_DIR / HELDOUT_PREDICTIONS)
    report = build(everything, heldout, fits, cfg.layers, card["name"], card["init"])
    write_json(DATA / "probes.json", report.full)
    write_json(HEADLINE, report.headline)
    write_json(DATA / "report.json", report.detail)
    write_json(DATA / "position_accuracy.json", report.positions)
    write_json(DATA / "count_vs_countdown.json", report.counts)
    write_json("plots/accuracy_by_layer.json", report.series)
    for name, fig in report.figures.items():
        save_figure(fig, OUT / name)
    logger.info(report.summary_line())


if __name__ == "__main__":
    run(main)
