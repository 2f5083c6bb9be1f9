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
from emergent_pos.analysis.attribution import attribute, check_identity, head_counting
from emergent_pos.analysis.config import AttributionConfig, chosen_layers
from emergent_pos.analysis.forward import EMBED, PromptSet, model_components, require_hooks, z_hook
from emergent_pos.analysis.intervals import mean_ci
from emergent_pos.analysis.tokens import load_probes
from emergent_pos.config import key, read_params, section
from emergent_pos.dataset.prompts import prompts_path
from emergent_pos.io.cli import PARAMS, run
from emergent_pos.io.files import read_parquet, save_figure, write_json, write_parquet
from emergent_pos.io.resources import check_memory, gib
from emergent_pos.model.load import MODEL_DIR, load_bridge, read_card
from emergent_pos.model.placement import placement_from_env
from emergent_pos.probes.predictions import FITS, PROBES_DIR

logger = logging.getLogger("stages.attribution")
DATA = Path("data/attribution")


def main() -> None:
    raw = read_params(PARAMS)
    cfg = section(raw, "attribution", AttributionConfig)
    processing = key(raw, "activations.processing", ActivationsConfig)
    card = read_card()
    n_layers = card["n_layers"]
    layers = chosen_layers("attribution.layers", cfg.layers, n_layers, card["name"])
    n_words = json.loads((PROBES_DIR / FITS).read_text())["n_words"]
    ps = PromptSet.from_table(read_parquet(prompts_path("val")), n_words, cfg.n_prompts)
    probes = load_probes(n_layers, layers)
    bridge = load_bridge(MODEL_DIR, placement_from_env(), processing)
    require_hooks(bridge, [EMBED, z_hook(0)], "attribution")
    comps = model_components(bridge)
    n_points = len(ps) * n_words
    n_classes = len(next(iter(probes.values())).classes)
    needed = n_points * (
        len(layers) * len(comps) * (n_classes + 1) * 4 + n_layers * bridge.cfg.n_heads * card["d_model"] * 4
    )
    check_memory("attribution.n_prompts", cfg.n_prompts, 2 * needed, "attribution")
    logger.info(
        "attributing %d probes of %s to %d components on %d points of %d prompts (about %s)",
        len(layers),
        card["name"],
        len(comps),
        n_points,
        len(ps),
        gib(needed),
    )
    att = attribute(bridge, ps, probes, comps)
    check_identity(att, card["name"])
    rows, summary = [], {}
    for j, layer in enumerate(att.layers):
        total = att.margins[:, j].sum(1) + att.constant_margin[:, j]
        shares = {}
        for c, name in enumerate(att.components):
            if comps[c].first_layer > layer:
                continue
            shares[name] = mean_ci(att.margins[:, j, c], att.prompt_id)
            per_index = [float(att.per_index[att.label == k, j, c, k].mean()) for k in range(n_classes)]
            rows.append(
                {
                    "layer": layer,
                    "component": name,
                    "margin": shares[name]["mean"],
                    "ci_low": shares[name]["ci"][0],
                    "ci_high": shares[name]["ci"][1],
                    **{f"logit_of_index_{k}": v for k, v in enumerate(per_index)},
                }
            )
        top = sorted(shares, key=lambda n: -abs(shares[n]["mean"]))[: cfg.top_k]
        summary[str(layer)] = {
            "margin": mean_ci(total, att.prompt_id),
            "constant": float(att.constant_margin[:, j].mean()),
            "top_component": top[0],
            "top_share": shares[top[0]]["mean"] / float(total.mean()),
            "top": [{"component": n, **shares[n]} for n in top],
            "identity_error": att.identity_error[layer],
        }
        logger.info(
            "layer %d: margin %.2f; top %s",
            layer,
            float(total.mean()),
            ", ".join(f"{n} {shares[n]['mean']:+.2f}" for n in top),
        )
    heads = [c.name for c in comps if c.head is not None]
    r, partial = head_counting(att.head_outputs, att.label, att.position)
    best = int(np.argmax(partial))
    hypothesis = {
        "head": heads[best],
        "r": float(r[best]),
        "r_within_position": float(partial[best]),
        "every_head": [
            {"head": h, "r": float(a), "r_within_position": float(b)} for h, a, b in zip(heads, r, partial, strict=True)
        ],
    }
    logger.info(
        "head output tracking the word index best within position: %s (r %.2f, within position %.2f)",
        heads[best],
        r[best],
        partial[best],
    )
    DATA.mkdir(parents=True, exist_ok=True)
    write_parquet(DATA / "components.parquet", pd.DataFrame(rows))
    write_json(
        DATA / "attribution.json",
        {"model": card["name"], "n_points": int(len(att.label)), "layers": summary, "counting_head": hypothesis},
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
    save_figure(fig, Path("plots/attribution/components.png"))


if __name__ == "__main__":
    run(main)
