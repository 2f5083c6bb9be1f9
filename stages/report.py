"""Stage `report`: every metric, computed once from the probes' predictions, and the figures.

metrics/probes.json holds the headline (best layer, its accuracy and position-balanced
accuracy, the position-only baseline, selectivity; README's per-layer table in a list);
data/report/probes.json every number with its interval (both controls, fit facts,
prefix transfer, count vs countdown), data/report/report.json macro-F1 and per-index
accuracy, and data/report/ the (position, word index) breakdowns and every layer's
count-vs-countdown test; plots/ the figures and the data of `dvc plots`.
"""

import json
import logging
from pathlib import Path

from emergent_pos.config import ParamError, read_params, section
from emergent_pos.dataset.labels import LABEL
from emergent_pos.io.cli import PARAMS, run
from emergent_pos.io.files import read_parquet, save_figure, write_json
from emergent_pos.model.load import read_card
from emergent_pos.probes.predictions import (
    BASELINES,
    FITS,
    HELDOUT_PREDICTIONS,
    POSITION_CONTROL,
    PREDICTIONS,
    PROBE,
    PROBES_DIR,
    at_layer,
    layers,
)
from emergent_pos.report import plots
from emergent_pos.report.config import ReportConfig
from emergent_pos.report.count import count_vs_countdown
from emergent_pos.report.metrics import (
    HEADLINE_COLUMNS,
    column_accuracy,
    evaluate,
    macro_f1,
    main_set,
    normalized_confusion,
    per_class_accuracy,
    position_table,
    prefix_transfer,
)

logger = logging.getLogger("stages.report")
OUT = Path("plots/report")
DATA = Path("data/report")
HEADLINE = Path("metrics/probes.json")


def headline_metrics(full: dict) -> dict:
    """metrics/probes.json: five numbers `dvc metrics show` prints, and README's table in lists.

    ``dvc metrics show`` shows the numbers of mappings only, so the per-layer table and the
    baselines (lists) stay in the file, for `emergent-pos summary` and notebooks, without
    widening the terminal table.
    """
    best = full["layers"][str(full["best_layer"])]
    position_only = full["baselines"]["position_only"]
    return {
        "best_layer": full["best_layer"],
        "accuracy": best["accuracy"],
        "balanced": best["balanced_accuracy"],
        "position_only": position_only["accuracy"],
        "selectivity": best["selectivity"],
        "accuracy_ci": [best["accuracy_ci_low"], best["accuracy_ci_high"]],
        "balanced_ci": [best["balanced_ci_low"], best["balanced_ci_high"]],
        "layers": [{"layer": int(k), **{f: v.get(f) for f in HEADLINE_COLUMNS}} for k, v in full["layers"].items()],
        "baselines": [{"baseline": name, **scores} for name, scores in full["baselines"].items()],
    }


def main() -> None:
    cfg = section(read_params(PARAMS), "report", ReportConfig)
    card = read_card()
    everything = read_parquet(PROBES_DIR / PREDICTIONS)
    heldout = read_parquet(PROBES_DIR / HELDOUT_PREDICTIONS)
    fits = json.loads((PROBES_DIR / FITS).read_text())
    n_words = fits["n_words"]
    all_layers = layers(everything)
    chosen = all_layers if cfg.layers == "all" else cfg.layers
    bad = [layer for layer in chosen if layer not in all_layers]
    if bad:
        raise ParamError("report.layers", cfg.layers, f"layers must be in 0..{all_layers[-1]} for {card['name']}")
    pred = main_set(everything, n_words)
    points = at_layer(pred, all_layers[0])
    y, pos = points[LABEL].to_numpy(), points.position.to_numpy()
    ev = evaluate(pred, heldout)
    headline, detail, positions, counts, series = {}, {}, {}, {}, []
    for layer in all_layers:
        part = at_layer(pred, layer)
        p, hook = part[PROBE].to_numpy(), str(part.hook.iloc[0])
        s = headline[str(layer)] = {"hook": hook, **ev["layers"][layer], **fits["layers"][str(layer)]}
        detail[str(layer)] = {
            "hook": hook,
            "macro_f1": macro_f1(y, p),
            "per_word_index_accuracy": per_class_accuracy(y, p, n_words),
        }
        positions[str(layer)] = {
            "by_position_and_word": position_table(y, p, pos),
            "by_position": column_accuracy(y, p, pos),
        }
        counts[str(layer)] = count_vs_countdown(everything, n_words, layer)
        series.append(
            {
                "layer": layer,
                "probe": s["accuracy"],
                "probe_ci_low": s["accuracy_ci_low"],
                "probe_ci_high": s["accuracy_ci_high"],
                "probe_balanced": s["balanced_accuracy"],
                POSITION_CONTROL: s.get("position_control_accuracy"),
                **{b: ev["baselines"][b]["accuracy"] for b in BASELINES},
            }
        )
        if layer in chosen:
            title = f"{card['name']} layer {layer} ({hook})"
            fig = plots.key_plot(y, p, pos, n_words, f"predicted word index by position: {title}")
            save_figure(fig, OUT / f"key_plot_layer_{layer:02d}.png")
            fig = plots.confusion(normalized_confusion(y, p, n_words), title)
            save_figure(fig, OUT / f"confusion_layer_{layer:02d}.png")
    positions["position_only"] = {"by_position_and_word": position_table(y, points.position_only.to_numpy(), pos)}
    best = max(headline, key=lambda k: headline[k]["accuracy"])
    transfer = prefix_transfer(everything, n_words)
    count_best = {
        m: {
            "count": r["count"]["agreement"],
            "countdown": r["countdown"]["agreement"],
            "position_only_count": r["count"].get("position_only"),
            "verdict": r["verdict"],
        }
        for m, r in counts[best].items()
    }
    full = {
        "model": fits["model"],
        "init": fits["init"],
        "token": fits["token"],
        "n_train": fits["n_train"],
        "n_val": len(points),
        "n_val_balanced": ev["balanced_points"],
        "layers": headline,
        "baselines": ev["baselines"],
        "best_layer": int(best),
        "convergence_warnings": sum(v["convergence_warnings"] for v in headline.values()),
        "prefix_transfer": transfer,
        "count_vs_countdown": count_best,
    }
    write_json(DATA / "probes.json", full)
    write_json(HEADLINE, headline_metrics(full))
    write_json(DATA / "report.json", {"layers": detail})
    write_json(DATA / "position_accuracy.json", positions)
    write_json(DATA / "count_vs_countdown.json", counts)
    write_json("plots/accuracy_by_layer.json", plots.series_records(series))
    if len(transfer) > 1:
        fig = plots.prefix_transfer(transfer, f"{card['name']}: probes trained on prefix 0")
        save_figure(fig, OUT / "prefix_transfer.png")
    if counts[best]:
        title = f"{card['name']} layer {best}: probes trained on {n_words}-word prompts"
        save_figure(plots.count_vs_countdown(counts[best], n_words, title), OUT / "count_vs_countdown.png")
    fig = plots.accuracy_by_layer(series, f"{card['name']} ({card['init']}): word index from the residual stream")
    save_figure(fig, OUT / "accuracy_by_layer.png")
    top = headline[best]
    logger.info(
        "best layer %s: %.3f [%.3f, %.3f] (balanced %.3f [%.3f, %.3f]) vs position-only %.3f; count vs countdown %s",
        best,
        top["accuracy"],
        top["accuracy_ci_low"],
        top["accuracy_ci_high"],
        top["balanced_accuracy"],
        top["balanced_ci_low"],
        top["balanced_ci_high"],
        ev["baselines"]["position_only"]["accuracy"],
        {m: r["verdict"] for m, r in count_best.items()},
    )


if __name__ == "__main__":
    run(main)
