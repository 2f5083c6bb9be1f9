"""Stage `attribution`: each probe's logits split into the residual stream's components.

Writes data/attribution/attribution.json (per layer: margin, constant, the largest components
with intervals, the identity check; the head-counting hypothesis), every
(layer, component, word index) share in data/attribution/components.parquet, and the
component x layer heatmap (plots/attribution/). Run-time knobs: EMERGENT_POS_DEVICE and EMERGENT_POS_PLACEMENT.
"""

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from emergent_pos.activations.config import ActivationsConfig
from emergent_pos.analysis import plots
from emergent_pos.analysis.applies import not_applicable
from emergent_pos.analysis.attribution import attribute, check_identity, summarize
from emergent_pos.analysis.components import Layout
from emergent_pos.analysis.config import AttributionConfig, chosen_layers
from emergent_pos.analysis.forward import PromptSet
from emergent_pos.config import key, read_params, section
from emergent_pos.dataset.prompts import prompts_path
from emergent_pos.io.cli import PARAMS, run
from emergent_pos.io.files import read_parquet, save_figure, write_json, write_parquet
from emergent_pos.io.resources import check_memory, gib
from emergent_pos.model.load import MODEL_DIR, load_bridge, read_card
from emergent_pos.model.placement import placement_from_env
from emergent_pos.probes.linear import load_probes
from emergent_pos.probes.predictions import FITS, PROBES_DIR

logger = logging.getLogger("stages.attribution")
DATA = Path("data/attribution")
PLOT = Path("plots/attribution/components.png")


def main() -> None:
    raw = read_params(PARAMS)
    cfg = section(raw, "attribution", AttributionConfig)
    processing = key(raw, "activations.processing", ActivationsConfig)
    card = read_card()
    n_layers = card["n_layers"]
    layers = chosen_layers("attribution.layers", cfg.layers, n_layers, card["name"])
    fits = json.loads((PROBES_DIR / FITS).read_text())
    ps = PromptSet.from_table(read_parquet(prompts_path("val")), fits["n_units"], cfg.n_prompts, fits["char_bin"] or 1)
    probes = load_probes(n_layers, layers)
    bridge = load_bridge(MODEL_DIR, placement_from_env(), processing)
    layout = Layout.read(bridge)
    if not layout.decomposes:
        reason = f"its residual stream is not the sum of the terms this stage knows ({layout.describe()})"
        not_applicable("attribution", card["name"], reason, [DATA / "attribution.json"], [PLOT])
        write_parquet(DATA / "components.parquet", pd.DataFrame())
        return
    comps = layout.components()
    n_points = sum(len(ps.probed(i)) for i in range(len(ps)))
    n_classes = len(next(iter(probes.values())).classes)
    n_heads = sum(c.kind == "head" for c in comps)
    needed = n_points * (len(layers) * len(comps) * (n_classes + 1) * 4 + n_heads * card["d_model"] * 4)
    check_memory("attribution.n_prompts", cfg.n_prompts, 2 * needed, "attribution")
    logger.info(
        "attributing %d probes of %s to %s on %d points of %d prompts (about %s)",
        len(layers),
        card["name"],
        layout.describe(),
        n_points,
        len(ps),
        gib(needed),
    )
    att = attribute(bridge, ps, probes, layout)
    check_identity(att, card["name"])
    rows, summary, hypothesis = summarize(att, comps, n_classes, cfg.top_k)
    for layer, row in summary.items():
        top = ", ".join(f"{t['component']} {t['mean']:+.2f}" for t in row["top"])
        logger.info("layer %s: margin %.2f; top %s", layer, row["margin"]["mean"], top)
    if hypothesis:
        logger.info(
            "head output tracking the label best within position: %s (r %.2f, within position %.2f)",
            hypothesis["head"],
            hypothesis["r"],
            hypothesis["r_within_position"],
        )
    DATA.mkdir(parents=True, exist_ok=True)
    write_parquet(DATA / "components.parquet", pd.DataFrame(rows))
    write_json(
        DATA / "attribution.json",
        {
            "applies": True,
            "model": card["name"],
            "components": layout.describe(),
            "n_points": int(len(att.label)),
            "layers": summary,
            "counting_head": hypothesis,
        },
    )
    grid = np.full((len(comps), len(att.layers)), np.nan)
    for row in rows:
        grid[att.components.index(row["component"]), att.layers.index(row["layer"])] = row["margin"]
    fig = plots.component_layer(
        grid,
        att.components,
        att.layers,
        f"{card['name']}: each component's share of the probe's margin (true index vs the rest)",
        "mean margin contribution (logit)",
    )
    save_figure(fig, PLOT)


if __name__ == "__main__":
    run(main)
