"""Stage `report`: per-layer metrics with intervals, breakdowns and the seed's figures."""

import logging
from pathlib import Path

import pandas as pd

from emergent_pos import plots
from emergent_pos.atomic import write_json
from emergent_pos.cli import run
from emergent_pos.config import ParamError, load_params
from emergent_pos.metrics import normalized_confusion, per_class_accuracy, position_table, summary
from emergent_pos.model import read_card
from emergent_pos.store import hook_names

logger = logging.getLogger("stages.report")


def main() -> None:
    cfg = load_params("params.yaml", ["report"]).report
    card = read_card("data/model")
    pred = pd.read_parquet("data/probes/predictions_val.parquet")
    n_layers = card["n_layers"] + 1
    chosen = list(range(n_layers)) if cfg.layers == "all" else cfg.layers
    bad = [layer for layer in chosen if layer >= n_layers]
    if bad:
        raise ParamError("report.layers", cfg.layers, f"layers must be in 0..{n_layers - 1} for {card['name']}")
    y, pos, pid = pred.word_index.to_numpy(), pred.position.to_numpy(), pred.prompt_id.to_numpy()
    n_classes = int(y.max()) + 1
    names = hook_names(card["n_layers"])
    baselines = {b: summary(y, pred[b].to_numpy(), pid) for b in ("majority", "position_only")}
    layers, positions, series = {}, {}, []
    images = Path("plots/report")
    for layer in range(n_layers):
        p = pred[f"layer_{layer:02d}"].to_numpy()
        layers[str(layer)] = {
            "hook": names[layer],
            **summary(y, p, pid),
            "per_word_index_accuracy": per_class_accuracy(y, p, n_classes),
        }
        positions[str(layer)] = position_table(y, p, pos)
        s = layers[str(layer)]
        series.append(
            {
                "layer": layer,
                "probe": s["accuracy"],
                "probe_ci_low": s["accuracy_ci_low"],
                "probe_ci_high": s["accuracy_ci_high"],
                "position_only": baselines["position_only"]["accuracy"],
                "majority": baselines["majority"]["accuracy"],
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
                images / f"key_plot_layer_{layer:02d}.png",
            )
            plots.confusion(normalized_confusion(y, p, n_classes), title, images / f"confusion_layer_{layer:02d}.png")
    positions["position_only"] = position_table(y, pred.position_only.to_numpy(), pos)
    write_json("metrics/report.json", {"layers": layers, "baselines": baselines})
    write_json("metrics/position_accuracy.json", positions)
    write_json(images / "accuracy_by_layer.json", series)
    plots.accuracy_by_layer(
        series,
        f"{card['name']} ({card['init']}): word index from the residual stream",
        images / "accuracy_by_layer.png",
    )
    best = max(series, key=lambda r: r["probe"])
    logger.info(
        "best layer %d: %.3f [%.3f, %.3f] vs position-only %.3f",
        best["layer"],
        best["probe"],
        best["probe_ci_low"],
        best["probe_ci_high"],
        best["position_only"],
    )


if __name__ == "__main__":
    run(main)
