"""The report, computed once from the probes' predictions: every number and figure the report stage writes.

``build`` returns a ``Report``; the stage only writes its parts (``stages/report.py``):
metrics/probes.json (``headline``: a few numbers `dvc metrics show` prints, and README's
table in lists), data/report/probes.json (``full``: every number with its interval),
data/report/report.json (``detail``), the (position, label) breakdowns (``positions``),
every layer's count-vs-countdown test (``counts``) and the figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from matplotlib.figure import Figure

from emergent_pos.config import ParamError
from emergent_pos.dataset.labels import LABEL
from emergent_pos.dataset.schemes import SCHEMES
from emergent_pos.probes.predictions import PROBE, at_layer, layers
from emergent_pos.report import plots
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


@dataclass
class Report:
    full: dict
    headline: dict
    detail: dict
    positions: dict
    counts: dict
    series: list[dict]
    figures: dict[str, Figure] = field(default_factory=dict)  # file name in plots/report/ -> figure

    def summary_line(self) -> str:
        """One log line: the best layer against its best baseline, and the count verdicts."""
        best = self.full["layers"][str(self.full["best_layer"])]
        verdicts = {m: r["verdict"] for m, r in self.full["count_vs_countdown"].items()} or "not applicable"
        line = (
            f"{self.full['scheme']}, best layer {self.full['best_layer']}: {best['accuracy']:.3f} "
            f"[{best['accuracy_ci_low']:.3f}, {best['accuracy_ci_high']:.3f}] (balanced "
            f"{best['balanced_accuracy']:.3f} [{best['balanced_ci_low']:.3f}, {best['balanced_ci_high']:.3f}]) "
            f"vs best baseline {max(b['accuracy'] for b in self.full['baselines'].values()):.3f}; "
            f"count vs countdown {verdicts}"
        )
        if "r2" in self.headline:
            line += f"; ridge R² {self.headline['r2']:.3f} at layer {self.headline['r2_layer']}"
        return line


def headline_metrics(full: dict) -> dict:
    """metrics/probes.json: a few numbers `dvc metrics show` prints, and README's table in lists.

    ``dvc metrics show`` shows the numbers of mappings only, so the per-layer table and the
    baselines (lists) stay in the file, for `emergent-pos summary` and notebooks, without
    widening the terminal table.
    """
    best = full["layers"][str(full["best_layer"])]
    out = {
        "best_layer": full["best_layer"],
        "accuracy": best["accuracy"],
        "balanced": best["balanced_accuracy"],
        "position_only": full["baselines"]["position_only"]["accuracy"],
        "selectivity": best["selectivity"],  # accuracy minus the best baseline's (the list below)
        "accuracy_ci": [best["accuracy_ci_low"], best["accuracy_ci_high"]],
        "balanced_ci": [best["balanced_ci_low"], best["balanced_ci_high"]],
        "layers": [{"layer": int(k), **{f: v.get(f) for f in HEADLINE_COLUMNS}} for k, v in full["layers"].items()],
        "baselines": [{"baseline": name, **scores} for name, scores in full["baselines"].items()],
        "count_verdicts": [{"n_units": int(m), **r} for m, r in full["count_vs_countdown"].items()],
        "transfer": [
            {
                "prefix_id": int(k),
                "role": row.get("role"),
                "accuracy": row["accuracy"][str(full["best_layer"])],
                "ci": row["ci"][str(full["best_layer"])],
                "position_only": row["position_only"],
                **(
                    {
                        "after_restart": {
                            "accuracy": row["after_restart"]["accuracy"][str(full["best_layer"])],
                            "ci": row["after_restart"]["ci"][str(full["best_layer"])],
                            "position_only": row["after_restart"]["position_only"],
                        }
                    }
                    if "after_restart" in row
                    else {}
                ),
            }
            for k, row in full["prefix_transfer"].items()
        ],
    }
    if "regression" in full:
        reg = full["regression"]
        layer = max(reg["layers"], key=lambda k: reg["layers"][k]["r2"])
        out["r2_layer"] = int(layer)
        out["r2"] = reg["layers"][layer]["r2"]
        out["r2_ci"] = [reg["layers"][layer]["r2_ci_low"], reg["layers"][layer]["r2_ci_high"]]
        out["r2_baselines"] = [max(b["r2"] for b in reg["baselines"].values())]  # a list: kept off the table
    return out


def build(
    everything: pd.DataFrame, heldout: pd.DataFrame, fits: dict, figure_layers: list[int] | str, model: str, init: str
) -> Report:
    """Every number and figure of the report from the probes stage's tables and fit facts."""
    n_units, scheme = fits["n_units"], SCHEMES[fits["scheme"]]
    unit = scheme.unit
    all_layers = layers(everything)
    chosen = all_layers if figure_layers == "all" else figure_layers
    if any(layer not in all_layers for layer in chosen):
        raise ParamError("report.layers", figure_layers, f"layers must be in 0..{all_layers[-1]} for {model}")
    pred = main_set(everything, n_units)
    points = at_layer(pred, all_layers[0])
    y, pos = points[LABEL].to_numpy(), points.position.to_numpy()
    n_classes = int(max(y.max(), everything[PROBE].max())) + 1
    ev = evaluate(pred, heldout)
    per_layer, detail, positions, counts, figures = {}, {}, {}, {}, {}
    for layer in all_layers:
        part = at_layer(pred, layer)
        p, hook = part[PROBE].to_numpy(), str(part.hook.iloc[0])
        per_layer[str(layer)] = {"hook": hook, **ev["layers"][layer], **fits["layers"][str(layer)]}
        detail[str(layer)] = {
            "hook": hook,
            "macro_f1": macro_f1(y, p),
            "per_label_accuracy": per_class_accuracy(y, p, n_classes),
        }
        positions[str(layer)] = {
            "by_position_and_label": position_table(y, p, pos),
            "by_position": column_accuracy(y, p, pos),
        }
        if scheme.countdown:
            counts[str(layer)] = count_vs_countdown(everything, n_units, layer)
        if layer in chosen:
            title = f"{model} layer {layer} ({hook})"
            figures[f"key_plot_layer_{layer:02d}.png"] = plots.key_plot(
                y, p, pos, n_classes, f"predicted {unit} by absolute position: {title}", unit
            )
            figures[f"confusion_layer_{layer:02d}.png"] = plots.confusion(
                normalized_confusion(y, p, n_classes), title, unit
            )
    positions["position_only"] = {"by_position_and_label": position_table(y, points.position_only.to_numpy(), pos)}
    best = max(per_layer, key=lambda k: per_layer[k]["accuracy"])
    transfer = prefix_transfer(everything, n_units)
    roles = fits.get("prefixes", [])
    for k, row in transfer.items():
        row["role"] = roles[int(k)]["role"] if int(k) < len(roles) else None
    count_best = {
        m: {
            "count": r.get("count", {}).get("agreement"),
            "countdown": r.get("countdown", {}).get("agreement"),
            "position_only_count": r.get("count", {}).get("position_only"),
            "verdict": r["verdict"],
        }
        for m, r in counts.get(best, {}).items()
    }
    full = {
        "model": fits["model"],
        "init": fits["init"],
        "scheme": scheme.name,
        "unit": unit,
        "token": fits["token"],
        "n_train": fits["n_train"],
        "n_val": len(points),
        "n_val_balanced": ev["balanced_points"],
        "layers": per_layer,
        "baselines": ev["baselines"],
        "best_layer": int(best),
        "convergence_warnings": sum(v["convergence_warnings"] for v in per_layer.values()),
        "prefix_transfer": transfer,
        "count_vs_countdown": count_best,
    }
    if "regression" in ev:
        full["regression"] = {
            "layers": {str(k): v for k, v in ev["regression"]["layers"].items()},
            "baselines": ev["regression"]["baselines"],
        }
    headline = headline_metrics(full)
    table = pd.DataFrame(headline["layers"])
    baselines = {b["baseline"]: b["accuracy"] for b in headline["baselines"]}
    if len(transfer) > 1:
        figures["prefix_transfer.png"] = plots.prefix_transfer(transfer, f"{model}: probes on each prefix's prompts")
    if counts.get(best):
        title = f"{model} layer {best}: probes trained on {n_units}-{unit} prompts"
        figures["count_vs_countdown.png"] = plots.count_vs_countdown(counts[best], n_units, title, unit)
    title = f"{model} ({init}, {scheme.name}): {unit} index from the residual stream"
    figures["accuracy_by_layer.png"] = plots.accuracy_by_layer(table, baselines, title, unit)
    if "regression" in full:
        title = f"{model} ({init}): characters since the newline, ridge probe"
        reg = full["regression"]
        figures["regression_by_layer.png"] = plots.regression_by_layer(reg["layers"], reg["baselines"], title)
    return Report(
        full, headline, {"layers": detail}, positions, counts, plots.series_records(table, baselines), figures
    )
