"""Stage `report`: per-layer metrics with intervals, breakdowns and the seed's figures."""

import logging
from pathlib import Path

import pandas as pd

from emergent_pos import plots
from emergent_pos.atomic import write_json
from emergent_pos.cli import run
from emergent_pos.config import ParamError, load_params
from emergent_pos.metrics import (
    BASELINES,
    column_accuracy,
    evaluate,
    main_prefix,
    normalized_confusion,
    per_class_accuracy,
    position_table,
    prefix_transfer,
    summary,
)
from emergent_pos.model import read_card
from emergent_pos.store import hook_names

logger = logging.getLogger("stages.report")


def main() -> None:
    cfg = load_params("params.yaml", ["report"]).report
    card = read_card("data/model")
    everything = pd.read_parquet("data/probes/predictions_val.parquet")
    pred = main_prefix(everything)
    n_streams = card["n_layers"] + 1
    chosen = list(range(n_streams)) if cfg.layers == "all" else cfg.layers
    bad = [layer for layer in chosen if layer >= n_streams]
    if bad:
        raise ParamError("report.layers", cfg.layers, f"layers must be in 0..{n_streams - 1} for {card['name']}")
    y, pos, pid = pred.word_index.to_numpy(), pred.position.to_numpy(), pred.prompt_id.to_numpy()
    n_classes = int(y.max()) + 1
    names = hook_names(card["n_layers"])
    ev = evaluate(pred, n_streams)
    baselines = {b: {**summary(y, pred[b].to_numpy(), pid), **ev["baselines"][b]} for b in BASELINES}
    layers, positions, series = {}, {}, []
    out = Path("plots/report")
    for layer in range(n_streams):
        p = pred[f"layer_{layer:02d}"].to_numpy()
        s = {
            "hook": names[layer],
            **summary(y, p, pid),
            **ev["layers"][layer],
            "per_word_index_accuracy": per_class_accuracy(y, p, n_classes),
        }
        layers[str(layer)] = s
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
            title = f"{card['name']} layer {layer} ({names[layer]})"
            plots.key_plot(
                y,
                p,
                pos,
                n_classes,
                f"predicted word index by position: {title}",
                out / f"key_plot_layer_{layer:02d}.png",
            )
            plots.confusion(normalized_confusion(y, p, n_classes), title, out / f"confusion_layer_{layer:02d}.png")
    positions["position_only"] = {"by_position_and_word": position_table(y, pred.position_only.to_numpy(), pos)}
    write_json("metrics/report.json", {"layers": layers, "baselines": baselines, "n_val_balanced": ev["n_balanced"]})
    write_json("metrics/position_accuracy.json", positions)
    write_json(out / "accuracy_by_layer.json", series)
    transfer = prefix_transfer(everything, n_streams)
    if len(transfer) > 1:
        plots.prefix_transfer(
            transfer, n_streams, f"{card['name']}: probes trained on prefix 0", out / "prefix_transfer.png"
        )
    plots.accuracy_by_layer(
        series, f"{card['name']} ({card['init']}): word index from the residual stream", out / "accuracy_by_layer.png"
    )
    best = max(series, key=lambda r: r["probe"])
    logger.info(
        "best layer %d: %.3f [%.3f, %.3f] (balanced %.3f) vs position-only %.3f",
        best["layer"],
        best["probe"],
        best["probe_ci_low"],
        best["probe_ci_high"],
        best["probe_balanced"],
        best["position_only"],
    )


if __name__ == "__main__":
    run(main)
