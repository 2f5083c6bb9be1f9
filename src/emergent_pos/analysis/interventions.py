"""Causal tests, in the order the interventions stage runs them, and the tables it writes.

1. Is the probe's direction used? (``subspace.py``: projection, resampling, steering)
2. Which components compute it? (``ablation.py``: mean and resample ablation)
3. Where does it flow? (``patching.py``: activation patching between unit splits)

``run`` does all three on one model and returns every table; the stage only writes them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emergent_pos.analysis.ablation import ablations
from emergent_pos.analysis.components import Component, Layout
from emergent_pos.analysis.config import InterventionsConfig
from emergent_pos.analysis.forward import PromptSet, Readout
from emergent_pos.analysis.measure import LOSSES, Outcome, Task, measure, unit_start_masks
from emergent_pos.analysis.patching import make_pairs, patch, recovered, units_by_length
from emergent_pos.analysis.subspace import HOWS, steer, subspace_tests, summarize_subspace
from emergent_pos.config import ParamError
from emergent_pos.dataset.schemes.base import Scheme
from emergent_pos.probes.linear import LinearProbe

logger = logging.getLogger(__name__)


def text_prompts(tokenizer: Any, path: str, n_ctx: int | None, bos: bool, limit: int) -> PromptSet:
    """Windows of ordinary text (no unit structure: only the all-token loss is measured)."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ParamError("interventions.text_file", path, f"cannot read it ({err.strerror})") from err
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    width = min(n_ctx or 128, 128) - int(bos)
    windows = [ids[i : i + width] for i in range(0, len(ids) - 1, width)][:limit]
    if not windows:
        raise ParamError("interventions.text_file", path, "the file holds no text")
    tokens = [np.array(([tokenizer.bos_token_id] if bos else []) + w) for w in windows]
    none = [np.full(len(t), -1) for t in tokens]
    flags = [np.zeros(len(t), dtype=bool) for t in tokens]
    return PromptSet(tokens, none, none, flags, flags, none, none, np.arange(len(tokens)))


def top_components(comps: list[Component], ranked: pd.DataFrame | None, k: int | str, layer: int) -> list[Component]:
    """``all`` components, or the ``k`` largest by attribution to ``layer``'s probe margin."""
    if k == "all" or ranked is None:
        return comps
    ranked = ranked[ranked.layer == layer].assign(size=lambda f: f.margin.abs()).sort_values("size", ascending=False)
    names = [n for n in ranked.component if n in {c.name for c in comps}][: int(k)]
    return [c for c in comps if c.name in names]


@dataclass
class Results:
    """Every table of the interventions stage."""

    clean: Outcome
    subspaces: list[dict]
    steering: list[dict]
    ablations: list[dict]
    patching: list[dict]
    patch_frac: np.ndarray  # [component, position]
    patch_components: list[str]
    patch_clean: float | None
    readout_error: float

    def headline(self, layer: int, best: int) -> dict:
        """data/interventions/summary.json: each loss under each intervention against its random control."""
        losses = {f"{loss}_loss": {"clean": float(self.clean.mean_loss()[j])} for j, loss in enumerate(LOSSES)}
        for loss in LOSSES:
            losses[f"{loss}_loss"].update(summarize_subspace(self.subspaces, layer, loss))
        return {
            "applies": True,
            "layer": layer,
            **losses,
            "steering": self.steering,
            "top_ablations": sorted(self.ablations, key=lambda r: -r.get(f"accuracy_drop_layer_{best}", -1))[:5],
            "top_patches": sorted(self.patching, key=lambda r: -abs(r["recovered"]))[:5],
            "readout_error": self.readout_error,
        }

    def metrics(self, headline: dict, best: int) -> dict:
        """metrics/interventions.json: "is it used?" as two numbers `dvc metrics show` prints (how much
        the stop-decision loss rises when the probe subspace is projected out, and the random
        subspaces' mean), the rest in lists (left off its table): intervals, the random draws'
        sd (with its interval over draws), min and max, how many of their sds the probe lies
        above (95% CI), the top ablations, and the model's own end-token probability per
        prefix (``behaviour``)."""
        stop = headline["stop_decision_loss"]["projection"]
        above = [stop["random_sds_above"], *stop["random_sds_above_ci"]] if stop["random_sds_above"] else []
        return {
            "loss_up_probe": round(stop["probe"], 4),
            "loss_up_random": round(stop["random"]["mean"], 4),
            "loss_up_probe_ci": [round(v, 4) for v in stop["probe_ci"]],
            "loss_up_random_sd_min_max": [
                round(stop["random"]["sd"], 4),
                *(round(v, 4) for v in stop["random"]["range"]),
            ],
            "loss_up_random_sd_ci": [round(v, 4) for v in stop["random"].get("sd_ci", [])],
            "loss_up_random_sds_above": [round(v, 2) for v in above],
            "top_ablations": [
                {
                    "component": r["component"],
                    "ablation": r["ablation"],
                    "accuracy_drop": round(r.get(f"accuracy_drop_layer_{best}", 0.0), 4),
                    "ci": [round(v, 4) for v in r.get(f"accuracy_drop_layer_{best}_ci", [])],
                }
                for r in headline["top_ablations"][:3]
            ],
            "behaviour": [
                {k: r[k] for k in ("prefix_id", "role", "at_end", "at_end_ci", "elsewhere")}
                for r in headline.get("behaviour", [])
            ],
        }

    @staticmethod
    def log_lines(headline: dict) -> list[str]:
        """The two losses under projection of the probe subspace against the random control, in words."""
        lines = []
        for loss in ("decision_tokens_loss", "stop_decision_loss"):
            p = headline[loss]["projection"]
            r = p["random"]
            line = (
                f"{loss}: clean {headline[loss]['clean']:.3f}; projecting out the probe subspace "
                f"{p['probe']:+.3f} [{p['probe_ci'][0]:.3f}, {p['probe_ci'][1]:.3f}] vs {r['n']} random subspaces "
                f"{r['mean']:+.3f} (sd {r['sd']:.3f})"
            )
            if p["random_sds_above"] is not None:
                lo, hi = p["random_sds_above_ci"]
                line += f": {p['random_sds_above']:.1f} random sds above (95% CI {lo:.1f} to {hi:.1f})"
            lines.append(line)
        return lines

    def bars(self, layer: int) -> list[dict]:
        """Per loss and intervention: the probe subspace's change beside the random ones' mean and sd."""
        out = []
        for loss in LOSSES:
            for how in HOWS:
                mine = [r for r in self.subspaces if r["layer"] == layer and r["intervention"] == how]
                probe = next(r for r in mine if r["subspace"] == "probe")
                rand = [r[loss] for r in mine if r["subspace"] != "probe"]
                out.append(
                    {
                        "label": f"{loss.replace('_', ' ')}\n{how}",
                        "probe": probe[loss],
                        "probe_lo": probe[f"{loss}_lo"],
                        "probe_hi": probe[f"{loss}_hi"],
                        "random_mean": float(np.mean(rand)),
                        "random_sd": float(np.std(rand, ddof=1)),
                    }
                )
        return out


def run(
    bridge: Any,
    ps: PromptSet,
    probes: dict[int, LinearProbe],
    layout: Layout,
    cfg: InterventionsConfig,
    layers: list[int],
    best: int,
    patch_layer: int,
    n_units: int,
    has_bos: bool,
    seed: int,
    model: str,
    scheme: Scheme,
    text: PromptSet | None = None,
    ranked: pd.DataFrame | None = None,
) -> Results:
    """The three causal tests at the chosen probe layers (``layers``; ``patch_layer`` for patching),
    with the loss measured at the scheme's own decision tokens (``Scheme.decision``).

    An ordinal scheme's classes are binned counts, not unit indices: steering between the
    last two units and patching between unit splits do not apply to it.
    """
    masks = unit_start_masks(ps, has_bos) if layout.attention else None
    task = Task.build(ps, scheme.decision, bridge.tokenizer, probes, n_units, masks)
    readout = Readout(bridge)
    readout_error = readout.check(task.sequences(np.arange(1))[0], model)
    rng = np.random.default_rng([seed, 0x1A7])
    clean = measure(bridge, task, lambda idx, lengths: [], readout, desc="clean")
    logger.info(
        "clean: loss %s; probe accuracy by layer %s", np.round(clean.mean_loss(), 3), np.round(clean.accuracy(), 3)
    )
    text_task = Task.build(text, None, bridge.tokenizer, {}, n_units) if text is not None else None
    clean_text = measure(bridge, text_task, lambda idx, lengths: [], readout) if text_task else None

    subspaces, steering = [], []
    for layer in layers:
        subspaces += subspace_tests(
            bridge, task, text_task, layer, probes[layer], cfg.n_random, rng, clean, clean_text, readout
        )
        if not scheme.ordinal:  # steering moves between unit indices, which a binned count is not
            steering += steer(bridge, task, layer, probes[layer], cfg.n_random, rng, clean, readout)

    comps = layout.components()
    ablated = top_components([c for c in comps if c.ablatable], ranked, cfg.components, best)
    ablation_rows = ablations(bridge, task, ablated, clean, best, readout)

    patched = [c for c in comps if (c.kind == "embed" or c.ablatable) and c.first_layer <= patch_layer]
    if scheme.ordinal:
        return Results(clean, subspaces, steering, ablation_rows, [], np.zeros((0, 0)), [], None, readout_error)
    pairs = make_pairs(
        units_by_length(ps),
        ps.tokens[0][: ps.start(0)],
        cfg.n_pairs,
        cfg.patch_tokens,
        np.random.default_rng([seed, 0x9A7]),
    )
    gain, full, _ = patch(bridge, pairs, probes[patch_layer], patch_layer, patched)
    frac, lo, hi = recovered(gain, full)
    patching = [
        {"component": c.name, "position": p, "recovered": float(frac[i, p]), "ci": [float(lo[i, p]), float(hi[i, p])]}
        for i, c in enumerate(patched)
        for p in range(frac.shape[1])
    ]
    names = [c.name for c in patched]
    return Results(clean, subspaces, steering, ablation_rows, patching, frac, names, float(full.mean()), readout_error)
