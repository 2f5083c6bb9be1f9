"""Stage `report`: every metric, computed once from the probes' predictions, and the figures.

metrics/probes.json holds the headline (per-layer accuracy, position-balanced accuracy,
control task, selectivity, fit facts, prefix transfer); metrics/report.json adds
intervals, macro-F1 and per-index accuracy; data/report/position_accuracy.json the
(position, word index) breakdowns; plots/ the figures and the data of `dvc plots`.
"""

import json
import logging
from pathlib import Path

from emergent_pos.config import ParamError, read_params, section
from emergent_pos.dataset.labels import LABEL
from emergent_pos.io.cli import PARAMS, run
from emergent_pos.io.files import read_parquet, save_figure, write_json
from emergent_pos.model.load import read_card
from emergent_pos.probes.predictions import BASELINES, FITS, PREDICTIONS, PROBE, PROBES_DIR, at_layer, layers
from emergent_pos.report import plots
from emergent_pos.report.config import ReportConfig
from emergent_pos.report.metrics import (
    column_accuracy,
    evaluate,
    main_prefix,
    normalized_confusion,
    per_class_accuracy,
    position_table,
    prefix_transfer,
    summary,
)

logger = logging.getLogger("stages.report")
OUT = Path("plots/report")


def main() -> None:
    cfg = section(read_params(PARAMS), "report", ReportConfig)
    card = read_card()
    everything = read_parquet(PROBES_DIR / PREDICTIONS)
    fits = json.loads((PROBES_DIR / FITS).read_text())
    all_layers = layers(everything)
    chosen = all_layers if cfg.layers == "all" else cfg.layers
    bad = [layer for layer in chosen if layer not in all_layers]
    if bad:
        raise ParamError("report.layers", cfg.layers, f"layers must be in 0..{all_layers[-1]} for {card['name']}")
    pred = main_prefix(everything)
    points = at_layer(pred, all_layers[0])
    y, pos, pid = points[LABEL].to_numpy(), points.position.to_numpy(), points.prompt_id.to_numpy()
    n_classes = int(y.max()) + 1
    ev = evaluate(pred)
    transfer = prefix_transfer(everything)
    headline, detail, positions, series = {}, {}, {}, []
    baselines = {b: {**summary(y, points[b].to_numpy(), pid), **ev["baselines"][b]} for b in BASELINES}
    for layer in all_layers:
        part = at_layer(pred, layer)
        p, hook = part[PROBE].to_numpy(), str(part.hook.iloc[0])
        headline[str(layer)] = {"hook": hook, **ev["layers"][layer], **fits["layers"][str(layer)]}
        s = detail[str(layer)] = {
            "hook": hook,
            **summary(y, p, pid),
            **ev["layers"][layer],
            "per_word_index_accuracy": per_class_accuracy(y, p, n_classes),
        }
        positions[str(layer)] = {
            "by_position_and_word": position_table(y, p, pos),
            "by_position": column_accuracy(y, p, pos),
        }
        series.append(
            {
                "layer": layer,
                "probe": s["accuracy"],
                "probe_ci_low": s["accuracy_ci_low"],
                "probe_ci_high": s["accuracy_ci_high"],
                "probe_balanced": s["balanced_accuracy"],
                "control_task": s.get("control_accuracy"),
                **{b: baselines[b]["accuracy"] for b in BASELINES},
            }
        )
        if layer in chosen:
            title = f"{card['name']} layer {layer} ({hook})"
            fig = plots.key_plot(y, p, pos, n_classes, f"predicted word index by position: {title}")
            save_figure(fig, OUT / f"key_plot_layer_{layer:02d}.png")
            fig = plots.confusion(normalized_confusion(y, p, n_classes), title)
            save_figure(fig, OUT / f"confusion_layer_{layer:02d}.png")
    positions["position_only"] = {"by_position_and_word": position_table(y, points.position_only.to_numpy(), pos)}
    best = max(headline, key=lambda k: headline[k]["accuracy"])
    write_json(
        "metrics/probes.json",
        {
            "model": fits["model"],
            "init": fits["init"],
            "token": fits["token"],
            "n_train": fits["n_train"],
            "n_val": len(points),
            "n_val_balanced": ev["n_balanced"],
            "layers": headline,
            "baselines": ev["baselines"],
            "best_layer": int(best),
            "best_accuracy": headline[best]["accuracy"],
            "best_balanced_accuracy": headline[best]["balanced_accuracy"],
            "position_only_accuracy": ev["baselines"]["position_only"]["accuracy"],
            "selectivity": headline[best]["selectivity"],
            "convergence_warnings": sum(v["convergence_warnings"] for v in headline.values()),
            "prefix_transfer": transfer,
        },
    )
    write_json("metrics/report.json", {"layers": detail, "baselines": baselines, "n_val_balanced": ev["n_balanced"]})
    write_json("data/report/position_accuracy.json", positions)
    write_json("plots/accuracy_by_layer.json", plots.series_records(series))
    if len(transfer) > 1:
        fig = plots.prefix_transfer(transfer, f"{card['name']}: probes trained on prefix 0")
        save_figure(fig, OUT / "prefix_transfer.png")
    fig = plots.accuracy_by_layer(series, f"{card['name']} ({card['init']}): word index from the residual stream")
    save_figure(fig, OUT / "accuracy_by_layer.png")
    top = next(r for r in series if r["layer"] == int(best))
    logger.info(
        "best layer %d: %.3f [%.3f, %.3f] (balanced %.3f) vs position-only %.3f",
        top["layer"],
        top["probe"],
        top["probe_ci_low"],
        top["probe_ci_high"],
        top["probe_balanced"],
        top["position_only"],
    )


if __name__ == "__main__":
    run(main)
