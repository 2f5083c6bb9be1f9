"""Stage `probes`: a logistic-regression probe per layer, its baselines and headline metrics."""

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from emergent_pos.atomic import write_json, write_parquet
from emergent_pos.cli import run
from emergent_pos.config import load_params
from emergent_pos.metrics import accuracy
from emergent_pos.model import read_card
from emergent_pos.probes import Points, PositionBaseline, fit_probe, majority_class
from emergent_pos.prompts import file_hash
from emergent_pos.store import check_meta, hook_names, layer_path, read_rows

logger = logging.getLogger("stages.probes")


def main() -> None:
    cfg = load_params("params.yaml", ["probe"]).probe
    card = read_card("data/model")
    out = Path("data/probes")
    tables, points, hashes = {}, {}, {}
    for split in ("train", "val"):
        path = f"data/prompts/{split}.parquet"
        tables[split] = pd.read_parquet(path)
        points[split] = Points.select(tables[split], cfg.token)
        hashes[split] = file_hash(path)
    tr, va = points["train"], points["val"]
    names = hook_names(card["n_layers"])
    for split in ("train", "val"):  # refuse mismatched inputs before fitting anything
        for layer in range(len(names)):
            check_meta(layer_path(f"data/activations/{split}", layer), hashes[split], len(tables[split]), card["name"])
    logger.info(
        "probing %d layers of %s: %d train and %d val points (%s token of each word), %s",
        len(names),
        card["name"],
        len(tr.rows),
        len(va.rows),
        cfg.token,
        cfg,
    )
    position = PositionBaseline.fit(tr.position, tr.word_index)
    majority = majority_class(tr.word_index)
    predictions = {
        "prompt_id": va.prompt_id,
        "position": va.position,
        "word_index": va.word_index,
        "position_only": position.predict(va.position),
        "majority": np.full(len(va.rows), majority),
    }
    layers = {}
    for layer, name in enumerate(tqdm(names, desc="probes", unit="layer")):
        x_train = read_rows(layer_path("data/activations/train", layer), tr.rows, hashes["train"], len(tables["train"]))
        x_val = read_rows(layer_path("data/activations/val", layer), va.rows, hashes["val"], len(tables["val"]))
        t0 = time.perf_counter()
        probe = fit_probe(x_train, tr.word_index, cfg)
        seconds = time.perf_counter() - t0
        probe.save(out / f"layer_{layer:02d}.npz")
        pred = probe.predict(x_val)
        predictions[f"layer_{layer:02d}"] = pred
        layers[str(layer)] = {
            "hook": name,
            "train_accuracy": round(accuracy(tr.word_index, probe.predict(x_train)), 4),
            "val_accuracy": round(accuracy(va.word_index, pred), 4),
            "n_iter": probe.n_iter,
            "convergence_warnings": probe.convergence_warnings,
        }
        logger.info(
            "layer %d (%s): val accuracy %.3f, fit %.1fs, %d iterations, %d convergence warnings",
            layer,
            name,
            layers[str(layer)]["val_accuracy"],
            seconds,
            probe.n_iter,
            probe.convergence_warnings,
        )
    write_parquet(out / "predictions_val.parquet", pd.DataFrame(predictions))
    best = max(layers, key=lambda k: layers[k]["val_accuracy"])
    position_acc = round(accuracy(va.word_index, predictions["position_only"]), 4)
    write_json(
        "metrics/probes.json",
        {
            "model": card["name"],
            "init": card["init"],
            "token": cfg.token,
            "n_train": len(tr.rows),
            "n_val": len(va.rows),
            "layers": layers,
            "baselines": {
                "majority": round(accuracy(va.word_index, predictions["majority"]), 4),
                "position_only": position_acc,
            },
            "best_layer": int(best),
            "best_val_accuracy": layers[best]["val_accuracy"],
            "selectivity": round(layers[best]["val_accuracy"] - position_acc, 4),
            "convergence_warnings": sum(v["convergence_warnings"] for v in layers.values()),
        },
    )


if __name__ == "__main__":
    run(main)
