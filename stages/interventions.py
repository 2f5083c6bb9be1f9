"""Stage `interventions`: is the probe's direction used, which components compute it, where it flows.

Writes metrics/interventions.json (the headline: how much the stop-decision loss rises
when the best layer's probe subspace is projected out, against random subspaces of the
same rank), data/interventions/summary.json (every loss, projection and resampling,
steering, the top ablations and patches), the full tables in data/interventions/
(subspaces, steering, ablations, patching) and their plots (plots/interventions/).
Run-time knobs: EMERGENT_POS_DEVICE and EMERGENT_POS_PLACEMENT (model/placement.py).
"""

import json
import logging
from pathlib import Path

import pandas as pd

from emergent_pos.activations.config import ActivationsConfig
from emergent_pos.analysis import interventions, plots
from emergent_pos.analysis.applies import not_applicable
from emergent_pos.analysis.behaviour import behaviour
from emergent_pos.analysis.components import Layout
from emergent_pos.analysis.config import InterventionsConfig
from emergent_pos.analysis.forward import PromptSet, best_layer
from emergent_pos.config import ParamError, key, read_params, section, seed
from emergent_pos.dataset.config import PromptsConfig
from emergent_pos.dataset.prompts import prompts_path
from emergent_pos.dataset.schemes import SCHEMES
from emergent_pos.errors import NotApplicable, UserError
from emergent_pos.io.cli import PARAMS, run
from emergent_pos.io.files import read_parquet, save_figure, write_json, write_parquet
from emergent_pos.model.load import MODEL_DIR, load_bridge, read_card
from emergent_pos.model.placement import placement_from_env
from emergent_pos.probes.linear import load_probes
from emergent_pos.probes.predictions import FITS, PREDICTIONS, PROBES_DIR

logger = logging.getLogger("stages.interventions")
DATA = Path("data/interventions")
PLOTS = Path("plots/interventions")
ATTRIBUTION = Path("data/attribution/components.parquet")
HEADLINE = Path("metrics/interventions.json")


def main() -> None:
    raw = read_params(PARAMS)
    cfg = section(raw, "interventions", InterventionsConfig)
    processing = key(raw, "activations.processing", ActivationsConfig)
    has_bos = key(raw, "prompts.prepend_bos", PromptsConfig)
    card = read_card()
    n_layers, model = card["n_layers"], card["name"]
    fits = json.loads((PROBES_DIR / FITS).read_text())
    n_units, scheme = fits["n_units"], SCHEMES[fits["scheme"]]
    columns = ["layer", "prefix_id", "n_units", "probe", "label"]
    best = best_layer(read_parquet(PROBES_DIR / PREDICTIONS, columns=columns), n_units)
    layers = [best] if cfg.layers == "best" else cfg.layers
    patch_layer = best if cfg.patch_layer == "best" else cfg.patch_layer
    for name, value in (("layers", max(layers)), ("patch_layer", patch_layer)):
        if value > n_layers:
            raise ParamError(f"interventions.{name}", value, f"layers are 0..{n_layers} for {model}")
    ranked = None
    if cfg.components != "all":
        if not ATTRIBUTION.exists():
            raise UserError(
                f"interventions.components={cfg.components} ranks by attribution: run `dvc repro attribution`"
            )
        ranked = read_parquet(ATTRIBUTION)
        if ranked.empty:
            raise ParamError("interventions.components", cfg.components, f"attribution does not apply to {model}")
        attributed = sorted(set(ranked.layer))
        if best not in attributed:
            raise ParamError(
                "interventions.components",
                cfg.components,
                f"it ranks by attribution to the best layer, {best}, which attribution.layers leaves out "
                f"(attributed: {attributed}): add {best} there, or use all",
            )
    val = read_parquet(prompts_path("val"))
    ps = PromptSet.from_table(val, n_units, cfg.n_prompts, fits["char_bin"] or 1)
    probes = load_probes(n_layers)
    bridge = load_bridge(MODEL_DIR, placement_from_env(), processing)
    roles = [p["role"] for p in fits["prefixes"]]
    acts = behaviour(bridge, val, roles, scheme.decision, n_units, cfg.n_prompts, fits["char_bin"] or 1)
    write_json(DATA / "behaviour.json", {"end": scheme.decision.end, "prefixes": acts})
    title = f"{model}: does the model end where the count says? ({scheme.name}, each prefix)"
    save_figure(plots.behaviour(acts, scheme.decision.end, scheme.unit, n_units, title), PLOTS / "behaviour.png")
    text = None
    if cfg.text_file:
        text = interventions.text_prompts(bridge.tokenizer, cfg.text_file, card["n_ctx"], has_bos, cfg.n_prompts)
    layout = Layout.read(bridge)
    logger.info(
        "interventions on %s (%s): probe layers %s (best %d), patching at layer %d, %d prompts, %d random draws",
        model,
        layout.describe(),
        layers,
        best,
        patch_layer,
        len(ps),
        cfg.n_random,
    )
    try:
        res = interventions.run(
            bridge,
            ps,
            probes,
            layout,
            cfg,
            layers,
            best,
            patch_layer,
            n_units,
            has_bos,
            seed(raw),
            model,
            scheme,
            text,
            ranked,
        )
    except NotApplicable as err:
        files = [DATA / "summary.json", DATA / "details.json", HEADLINE]
        not_applicable("interventions", model, str(err), files, [PLOTS / "subspace.png", PLOTS / "patching.png"])
        write_parquet(DATA / "subspaces.parquet", pd.DataFrame())
        return
    layer = layers[0]
    headline = {"model": model, **res.headline(layer, best), "behaviour": acts}
    DATA.mkdir(parents=True, exist_ok=True)
    write_parquet(DATA / "subspaces.parquet", pd.DataFrame(res.subspaces))
    details = {"steering": res.steering, "ablations": res.ablations, "patching": res.patching}
    write_json(DATA / "details.json", {"applies": True, **details, "patching_clean_difference": res.patch_clean})
    write_json(DATA / "summary.json", headline)
    write_json(HEADLINE, res.metrics(headline, best))  # beside metrics/probes.json in `dvc metrics show`
    for line in res.log_lines(headline):
        logger.info(line)
    title = f"{model}: probe subspace at layer {layer} removed"
    save_figure(plots.subspace_effects(res.bars(layer), title), PLOTS / "subspace.png")
    if res.patching:
        title = f"{model}: patching A into B, probe logit difference at layer {patch_layer}"
        save_figure(plots.patching(res.patch_frac, res.patch_components, title), PLOTS / "patching.png")
    else:
        why = "the ordinal scheme's classes are binned counts, not the unit indices patching swaps"
        save_figure(plots.notice(f"{model}: activation patching does not apply", why), PLOTS / "patching.png")


if __name__ == "__main__":
    run(main)
