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

import numpy as np
import pandas as pd
import torch

from emergent_pos.activations.config import ActivationsConfig
from emergent_pos.analysis import plots
from emergent_pos.analysis.config import InterventionsConfig
from emergent_pos.analysis.forward import (
    EMBED,
    PromptSet,
    ablatable,
    best_layer,
    capture,
    donors,
    model_components,
    require_hooks,
    z_hook,
)
from emergent_pos.analysis.intervals import spread
from emergent_pos.analysis.interventions import (
    LOSSES,
    Task,
    ablate,
    add_at,
    make_pairs,
    measure,
    paired_delta,
    patch,
    position_means,
    probe_basis,
    project_out,
    random_basis,
    recovered,
    resample,
    word_start_masks,
)
from emergent_pos.analysis.tokens import load_probes
from emergent_pos.config import ParamError, key, read_params, section, seed
from emergent_pos.dataset.config import PromptsConfig
from emergent_pos.dataset.prompts import prompts_path
from emergent_pos.errors import UserError
from emergent_pos.io.cli import PARAMS, run
from emergent_pos.io.files import read_parquet, save_figure, write_json, write_parquet
from emergent_pos.model.hooks import residual_hooks
from emergent_pos.model.load import MODEL_DIR, load_bridge, read_card
from emergent_pos.model.placement import placement_from_env
from emergent_pos.probes.predictions import FITS, PREDICTIONS, PROBES_DIR

logger = logging.getLogger("stages.interventions")
DATA = Path("data/interventions")
PLOTS = Path("plots/interventions")
ATTRIBUTION = Path("data/attribution/components.parquet")
HEADLINE = Path("metrics/interventions.json")


def text_prompts(tokenizer, path: str, n_ctx: int | None, bos: bool, limit: int) -> PromptSet:
    """Windows of ordinary text (no word structure: only the all-token loss is measured)."""
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
    return PromptSet(tokens, none, flags, flags, none, np.arange(len(tokens)))


def subspace_tests(bridge, task, text_task, layer, probe, cfg, rng, clean, clean_text):
    """Projection and resampling of the probe subspace at ``layer`` against random ones."""
    hook = residual_hooks(bridge.cfg.n_layers)[layer]
    device = bridge.cfg.device
    basis = probe_basis(probe)
    rank, d = basis.shape[1], basis.shape[0]
    bases = {"probe": basis, **{f"random_{i}": random_basis(d, rank, rng) for i in range(cfg.n_random)}}
    results = {}
    for how in ("projection", "resample"):
        for name, q in bases.items():
            qt = torch.as_tensor(q, dtype=torch.float32, device=device)
            draw = np.random.default_rng([cfg.n_random, layer])

            def hooks(idx, lengths, qt=qt, how=how, draw=draw):
                fn = project_out(qt) if how == "projection" else resample(qt, donors(lengths, draw))
                return [(hook, fn)]

            out = measure(bridge, task, hooks, desc=f"layer {layer} {how} {name}")
            deltas = paired_delta(clean.loss, clean.loss_n, out.loss, out.loss_n)
            row = {
                "layer": layer,
                "intervention": how,
                "subspace": name,
                "rank": rank,
                "probe_accuracy": float(out.accuracy()[sorted(task.probes).index(layer)]),
            }
            for j, loss in enumerate(LOSSES):
                row[loss] = float(deltas["delta"][j])
                row[f"{loss}_lo"], row[f"{loss}_hi"] = float(deltas["lo"][j]), float(deltas["hi"][j])
            if text_task is not None:
                t = measure(bridge, text_task, hooks)
                row["text"] = float(t.mean_loss()[0] - clean_text.mean_loss()[0])
            results[(how, name)] = row
    return list(results.values())


def summarize_subspace(rows: list[dict], layer: int, loss: str) -> dict:
    out = {}
    for how in ("projection", "resample"):
        probe = next(r for r in rows if r["layer"] == layer and r["intervention"] == how and r["subspace"] == "probe")
        rand = [r[loss] for r in rows if r["layer"] == layer and r["intervention"] == how and r["subspace"] != "probe"]
        out[how] = {
            "probe": probe[loss],
            "probe_ci": [probe[f"{loss}_lo"], probe[f"{loss}_hi"]],
            "random": spread(rand),
            # a ratio means something only when random subspaces raise the loss at all
            "ratio": probe[loss] / float(np.mean(rand)) if np.mean(rand) > 0 else None,
            "random_sds_above": (probe[loss] - float(np.mean(rand))) / float(np.std(rand, ddof=1)),
            "probe_accuracy_after": probe["probe_accuracy"],
        }
    return out


def main() -> None:
    raw = read_params(PARAMS)
    cfg = section(raw, "interventions", InterventionsConfig)
    processing = key(raw, "activations.processing", ActivationsConfig)
    has_bos = key(raw, "prompts.prepend_bos", PromptsConfig)
    rng = np.random.default_rng([seed(raw), 0x1A7])
    card = read_card()
    n_layers = card["n_layers"]
    n_words = json.loads((PROBES_DIR / FITS).read_text())["n_words"]
    best = best_layer(
        read_parquet(PROBES_DIR / PREDICTIONS, columns=["layer", "prefix_id", "n_words", "probe", "word_index"]),
        n_words,
    )
    layers = [best] if cfg.layers == "best" else cfg.layers
    patch_layer = best if cfg.patch_layer == "best" else cfg.patch_layer
    for name, value in (("layers", max(layers)), ("patch_layer", patch_layer)):
        if value > n_layers:
            raise ParamError(f"interventions.{name}", value, f"layers are 0..{n_layers} for {card['name']}")
    ps = PromptSet.from_table(read_parquet(prompts_path("val")), n_words, cfg.n_prompts)
    probes = load_probes(n_layers)
    bridge = load_bridge(MODEL_DIR, placement_from_env(), processing)
    require_hooks(bridge, [EMBED, z_hook(0)], "interventions")
    tok = bridge.tokenizer
    end_ids = tok(cfg.sentence_end, add_special_tokens=False)["input_ids"] if cfg.sentence_end else []
    task = Task(ps, end_ids, probes, n_words, word_start_masks(ps, has_bos))
    text_task = None
    if cfg.text_file:
        text_task = Task(text_prompts(tok, cfg.text_file, card["n_ctx"], has_bos, cfg.n_prompts), [], {}, n_words)
    logger.info(
        "interventions on %s: probe layers %s (best %d), patching at layer %d, %d prompts, %d random draws, end %r",
        card["name"],
        layers,
        best,
        patch_layer,
        len(ps),
        cfg.n_random,
        cfg.sentence_end,
    )
    clean = measure(bridge, task, lambda idx, lengths: [], desc="clean")
    clean_text = measure(bridge, text_task, lambda idx, lengths: []) if text_task else None
    logger.info(
        "clean: loss %s; probe accuracy by layer %s", np.round(clean.mean_loss(), 3), np.round(clean.accuracy(), 3)
    )

    # 1. is the direction used?
    subspace = []
    for layer in layers:
        subspace += subspace_tests(bridge, task, text_task, layer, probes[layer], cfg, rng, clean, clean_text)
    steering = steer(bridge, ps, task, probes, layers, n_words, cfg, rng, clean) if end_ids else []

    # 2. which components matter?
    comps = ablatable(model_components(bridge))
    if isinstance(cfg.components, int):
        if not ATTRIBUTION.exists():
            raise UserError(
                f"interventions.components={cfg.components} ranks components by attribution: "
                "run `dvc repro attribution`"
            )
        ranked = read_parquet(ATTRIBUTION)
        ranked = ranked[ranked.layer == best].assign(size=lambda f: f.margin.abs()).sort_values("size", ascending=False)
        names = [n for n in ranked.component if n in {c.name for c in comps}][: cfg.components]
        comps = [c for c in comps if c.name in names]
    means = position_means(bridge, task, comps)
    ablations = []
    layer_list = sorted(probes)
    clean_scores = clean.scores.sum(0) / clean.score_n.sum()
    for c in comps:
        for how in ("mean", "resample"):
            draw = np.random.default_rng([7, c.block, c.head or 0])
            out = measure(
                bridge,
                task,
                lambda idx, lengths, c=c, how=how, draw=draw: [(c.hook, ablate(c, how, means, donors(lengths, draw)))],
                desc=f"ablate {c.name} ({how})",
            )
            drop = paired_delta(out.correct, out.points[:, None], clean.correct, clean.points[:, None])
            scores = out.scores.sum(0) / out.score_n.sum()
            later = scores[c.block + 1 :] - clean_scores[c.block + 1 :]
            row = {
                "component": c.name,
                "ablation": how,
                "loss_word_ends": float(out.mean_loss()[1] - clean.mean_loss()[1]),
            }
            for j, layer in enumerate(layer_list):
                if layer > c.block:
                    row[f"accuracy_drop_layer_{layer}"] = float(drop["delta"][j])
                    row[f"accuracy_drop_layer_{layer}_ci"] = [float(drop["lo"][j]), float(drop["hi"][j])]
            if later.size:
                b, h = np.unravel_index(np.abs(later).argmax(), later.shape)
                row["largest_word_start_score_change"] = {
                    "head": f"L{c.block + 1 + b}H{h}",
                    "change": float(later[b, h]),
                }
            ablations.append(row)
        logger.info(
            "ablated %s: accuracy drop at layer %d %s",
            c.name,
            best,
            [round(r.get(f"accuracy_drop_layer_{best}", 0.0), 3) for r in ablations[-2:]],
        )

    # 3. activation patching
    words: dict[int, list[np.ndarray]] = {}
    for i in range(len(ps)):
        for w in np.unique(ps.word_index[i][ps.word_index[i] >= 0]):
            ids = ps.tokens[i][ps.word_index[i] == w]
            words.setdefault(len(ids), []).append(ids)
    prefix = ps.tokens[0][: ps.anchor(0) + 1]
    pairs = make_pairs(words, prefix, cfg.n_pairs, cfg.patch_tokens, np.random.default_rng([seed(raw), 0x9A7]))
    patch_comps = [c for c in model_components(bridge) if c.name == "embed" or c in ablatable(model_components(bridge))]
    patch_comps = [c for c in patch_comps if c.first_layer <= patch_layer]
    gain, full, _ = patch(bridge, pairs, probes[patch_layer], patch_layer, patch_comps)
    frac, lo, hi = recovered(gain, full)
    patching = [
        {"component": c.name, "position": p, "recovered": float(frac[i, p]), "ci": [float(lo[i, p]), float(hi[i, p])]}
        for i, c in enumerate(patch_comps)
        for p in range(frac.shape[1])
    ]
    DATA.mkdir(parents=True, exist_ok=True)
    write_parquet(DATA / "subspaces.parquet", pd.DataFrame(subspace))
    write_json(
        DATA / "details.json",
        {
            "steering": steering,
            "ablations": ablations,
            "patching": patching,
            "patching_clean_difference": float(full.mean()),
        },
    )
    headline = {
        "model": card["name"],
        "layer": best if cfg.layers == "best" else layers[0],
        "word_ends_loss": {
            "clean": float(clean.mean_loss()[1]),
            **summarize_subspace(subspace, layers[0], "word_ends"),
        },
        "stop_decision_loss": {
            "clean": float(clean.mean_loss()[2]),
            **summarize_subspace(subspace, layers[0], "stop_decision"),
        },
        "all_tokens_loss": {
            "clean": float(clean.mean_loss()[0]),
            **summarize_subspace(subspace, layers[0], "all_tokens"),
        },
        "steering": steering,
        "top_ablations": sorted(ablations, key=lambda r: -r.get(f"accuracy_drop_layer_{best}", -1))[:5],
        "top_patches": sorted(patching, key=lambda r: -abs(r["recovered"]))[:5],
    }
    write_json(DATA / "summary.json", headline)
    stop = headline["stop_decision_loss"]["projection"]
    write_json(
        HEADLINE,
        {  # is it used? beside is-it-there (metrics/probes.json) in `dvc metrics show` and `dvc exp show`
            "loss_up_probe": round(stop["probe"], 4),
            "loss_up_random": round(stop["random"]["mean"], 4),
            "loss_up_probe_ci": [round(v, 4) for v in stop["probe_ci"]],
            "loss_up_random_sd_range": [
                round(stop["random"]["sd"], 4),
                *(round(v, 4) for v in stop["random"]["range"]),
            ],
        },
    )
    for loss in ("word_ends_loss", "stop_decision_loss"):
        p = headline[loss]["projection"]
        logger.info(
            "%s: clean %.3f; projecting out the probe subspace %+.3f [%.3f, %.3f] vs random %+.3f ± %.3f "
            "(%.1f random sds above; ratio %s)",
            loss,
            headline[loss]["clean"],
            p["probe"],
            *p["probe_ci"],
            p["random"]["mean"],
            p["random"]["sd"],
            p["random_sds_above"],
            p["ratio"],
        )
    bars = []
    for loss in LOSSES:
        for how in ("projection", "resample"):
            probe = next(
                r for r in subspace if r["layer"] == layers[0] and r["intervention"] == how and r["subspace"] == "probe"
            )
            rand = [
                r[loss]
                for r in subspace
                if r["layer"] == layers[0] and r["intervention"] == how and r["subspace"] != "probe"
            ]
            bars.append(
                {
                    "label": f"{loss.replace('_', ' ')}\n{how}",
                    "probe": probe[loss],
                    "probe_lo": probe[f"{loss}_lo"],
                    "probe_hi": probe[f"{loss}_hi"],
                    "random_mean": float(np.mean(rand)),
                    "random_sd": float(np.std(rand, ddof=1)),
                }
            )
    save_figure(
        plots.subspace_effects(bars, f"{card['name']}: probe subspace at layer {layers[0]} removed"),
        PLOTS / "subspace.png",
    )
    save_figure(
        plots.patching(
            frac,
            [c.name for c in patch_comps],
            f"{card['name']}: patching A into B, probe logit difference at layer {patch_layer}",
        ),
        PLOTS / "patching.png",
    )


def steer(bridge, ps, task, probes, layers, n_words, cfg, rng, clean) -> list[dict]:
    """Add the difference of two adjacent class directions at one word's last token; P(end) moves?"""
    out = []
    resid = residual_hooks(bridge.cfg.n_layers)
    device = bridge.cfg.device
    for layer in layers:
        probe = probes[layer]
        w = probe.coef / probe.scale
        sums = {}
        for idx, tokens, _ in ps.batches(64):
            x = capture(bridge, tokens, [resid[layer]])[resid[layer]].float().cpu().numpy()
            for k, i in enumerate(idx):
                ends = np.flatnonzero(ps.ends_word[i] & (ps.word_index[i] >= 0))
                for e in ends:
                    s = sums.setdefault(int(ps.word_index[i][e]), [np.zeros(x.shape[-1]), 0])
                    s[0] += x[k, e]
                    s[1] += 1
        mu = {c: v[0] / v[1] for c, v in sums.items()}
        for src, dst in ((n_words - 2, n_words - 1), (n_words - 1, n_words - 2)):
            cols = np.searchsorted(probe.classes, [src, dst])
            direction = w[cols[1]] - w[cols[0]]
            step = float(np.linalg.norm(mu[dst] - mu[src]))
            vecs = {"probe": direction / np.linalg.norm(direction) * step}
            for r in range(cfg.n_random):
                v = rng.standard_normal(len(direction))
                vecs[f"random_{r}"] = v / np.linalg.norm(v) * step
            probs = {}
            for name, v in vecs.items():
                vt = torch.as_tensor(v, dtype=torch.float32, device=device)

                def hooks(idx, lengths, vt=vt, src=src, layer=layer):
                    pos = np.array([int(np.flatnonzero(ps.ends_word[i] & (ps.word_index[i] == src))[0]) for i in idx])
                    return [(resid[layer], add_at(vt, np.arange(len(idx)), pos))]

                res = measure(bridge, task, hooks)
                probs[name] = float(np.nanmean(res.end_prob[:, src]))
            out.append(
                {
                    "layer": layer,
                    "at_word_index": src,
                    "towards_index": dst,
                    "step_norm": step,
                    "end_probability_clean": float(np.nanmean(clean.end_prob[:, src])),
                    "end_probability_steered": probs["probe"],
                    "end_probability_random": spread([v for k, v in probs.items() if k != "probe"]),
                }
            )
            logger.info(
                "steering at word %d towards %d (layer %d): P(end) %.3f -> %.3f (random directions %.3f)",
                src,
                dst,
                layer,
                out[-1]["end_probability_clean"],
                probs["probe"],
                out[-1]["end_probability_random"]["mean"],
            )
    return out


if __name__ == "__main__":
    run(main)
