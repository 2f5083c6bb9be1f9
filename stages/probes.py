"""Stage `probes`: a logistic-regression probe per layer, baselines, controls, headline metrics.

Run-time knobs (environment, not params: they do not change results):
EMERGENT_POS_DEVICE (auto | cpu | cuda[:N]) for the torch backend, and
EMERGENT_POS_PROBE_JOBS (worker processes for scikit-learn fits; default one per core
for single-threaded solvers on fits big enough to repay a worker's start-up).
"""

import logging
import os
from pathlib import Path

from emergent_pos.atomic import write_json, write_parquet
from emergent_pos.cli import env_int, run
from emergent_pos.config import load_params
from emergent_pos.metrics import evaluate, main_prefix, prefix_transfer
from emergent_pos.model import read_card, resolve_device
from emergent_pos.probes import Split, probe_layers
from emergent_pos.prompts import SPLITS
from emergent_pos.store import check_meta, hook_names, layer_path

logger = logging.getLogger("stages.probes")


def main() -> None:
    cfg = load_params("params.yaml", ["probe"]).probe
    card = read_card("data/model")
    names = hook_names(card["n_layers"])
    splits = {}
    for split in SPLITS:
        splits[split] = s = Split.load(f"data/prompts/{split}.parquet", f"data/activations/{split}", cfg.token)
        for layer in range(len(names)):  # refuse mismatched inputs before fitting anything
            check_meta(layer_path(s.act_dir, layer), s.sha256, s.n_tokens, card["name"])
    train, val = splits["train"], splits["val"]
    logger.info(
        "probing %d layers of %s: %d train and %d val points (%s token(s) of each word); %s",
        len(names),
        card["name"],
        len(train.points.rows),
        len(val.points.rows),
        cfg.token,
        cfg,
    )
    device = resolve_device(os.environ.get("EMERGENT_POS_DEVICE", "auto")) if cfg.backend == "torch" else "cpu"
    jobs = env_int("EMERGENT_POS_PROBE_JOBS", 1) if "EMERGENT_POS_PROBE_JOBS" in os.environ else None
    pred, fits = probe_layers(train, val, len(names), cfg, Path("data/probes"), device, jobs)
    write_parquet("data/probes/predictions_val.parquet", pred)
    ev = evaluate(main_prefix(pred), len(names))
    layers = {str(k): {"hook": names[k], **ev["layers"][k], **fits[k]} for k in range(len(names))}
    best = max(layers, key=lambda k: layers[k]["accuracy"])
    write_json(
        "metrics/probes.json",
        {
            "model": card["name"],
            "init": card["init"],
            "token": cfg.token,
            "n_train": len(train.points.rows),
            "n_val": int((val.points.prefix_id == 0).sum()),
            "n_val_balanced": ev["n_balanced"],
            "layers": layers,
            "baselines": ev["baselines"],
            "best_layer": int(best),
            "best_accuracy": layers[best]["accuracy"],
            "best_balanced_accuracy": layers[best]["balanced_accuracy"],
            "position_only_accuracy": ev["baselines"]["position_only"]["accuracy"],
            "selectivity": layers[best]["selectivity"],
            "convergence_warnings": sum(v["convergence_warnings"] for v in layers.values()),
            "prefix_transfer": prefix_transfer(pred, len(names)),
        },
    )


if __name__ == "__main__":
    run(main)
