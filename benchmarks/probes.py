"""Probe fitting per layer, as the probes stage does it, for each backend; ratios in one run.

Each configuration runs the stage's own core (``probe_layers``: read the layer files,
fit the probe and the position-shuffled control of every layer, predict validation) on the same
real HDF5 files and reports wall time per layer and accuracy:

* baseline: scikit-learn one layer at a time with default BLAS threads (the stage
  before layers ran in parallel);
* scikit-learn with layers in worker processes, one BLAS thread each (the stage now);
* scikit-learn as above with ``tol=1e-6``: the converged probe, the accuracy reference
  (scikit-learn's default tol can stop far from the optimum on correlated features);
* the torch backend (preconditioned batched L-BFGS; on the GPU when there is one).

Data: activation-like synthetic features (GPT-2-small width by default: anisotropic,
correlated, a few huge outlier dimensions, word index mixed with absolute position and
token identity) for prompts built like the pipeline's, at seed scale (1,430 training
prompts, ~10,000 points) or ``--scale 10``; or ``--real`` for the workspace's own
``data/prompts`` and ``data/activations`` (run ``dvc repro activations`` first).

    python benchmarks/probes.py [--d-model 768] [--layers 4] [--scale 1] [--real] [--configs ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import save  # noqa: E402

from emergent_pos.activations.store import HookMeta, HookWriter, hook_path, read_meta, stored_hooks  # noqa: E402
from emergent_pos.dataset.labels import Points  # noqa: E402
from emergent_pos.dataset.prompts import prompts_path  # noqa: E402
from emergent_pos.model.hooks import EMBEDDINGS, residual_hooks  # noqa: E402
from emergent_pos.probes.config import ProbeConfig  # noqa: E402
from emergent_pos.probes.predictions import at_layer  # noqa: E402
from emergent_pos.probes.runner import Split, probe_layers  # noqa: E402

PREFIX_TOKENS = 20


def synthetic_split(root: Path, n_prompts: int, n_layers: int, d: int, seed: int) -> Split:
    """Word-end tokens of ``n_prompts`` prompts (7 words of 1-3 tokens after a 20-token prefix).

    Each layer's features mix the word index, the absolute position and a per-token
    identity through a fixed random map with a power-law spectrum, plus noise and three
    outlier dimensions 30x the others, as GPT-2's residual stream has. Deeper layers carry
    more word-index signal. Only word ends are stored: they are all the probe reads.
    """
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 4, size=(n_prompts, 7))
    position = PREFIX_TOKENS + np.cumsum(lengths, axis=1) - 1
    word = np.tile(np.arange(7), n_prompts)
    table = pd.DataFrame(
        {
            "prompt_id": np.repeat(np.arange(n_prompts), 7),
            "prefix_id": 0,
            "n_units": 7,
            "position": position.ravel(),
            "label": word,
            "confound": position.ravel() - PREFIX_TOKENS,  # tokens since the anchor
            "unit_start": True,
            "unit_end": True,
            "word": [f"w{i}" for i in range(len(word))],
            "word_type": [f"w{i}" for i in range(len(word))],
            "is_word_start": lengths.ravel() == 1,
            "is_word_end": True,
        }
    )
    fixed = np.random.default_rng(1234)  # the "model": the same in every split
    spectrum = np.logspace(0, -2.5, d)
    mix = fixed.normal(size=(d, d)) * spectrum[None, :]
    word_dirs, pos_dirs = fixed.normal(size=(7, d)), fixed.normal(size=(64, d))
    token_dirs = fixed.normal(size=(400, d)) * 0.5
    scale = np.ones(d)
    scale[:3] = 30.0
    root.mkdir(parents=True)
    for layer, hook in enumerate(residual_hooks(n_layers - 1)):
        strength = 0.12 + 0.04 * layer
        x = (
            strength * word_dirs[word]
            + 0.5 * pos_dirs[table.position.to_numpy() % 64]
            + token_dirs[rng.integers(0, 400, len(word))]
            + rng.normal(size=(len(word), d))
        ) @ mix.T
        x = (x * scale + 3.0).astype(np.float32)
        meta = HookMeta("synthetic", hook, (d,), "float32", len(table), "synthetic", "raw", "float32")
        writer = HookWriter(hook_path(root, hook), meta)
        writer.write(0, x)
        writer.commit()
    return Split(Points.select(table, "last"), root, "synthetic", len(table), ordinal=False)


def run(train: Split, val: Split, n_layers: int, cfg: ProbeConfig, jobs: int | None, device: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        result = probe_layers(train, val, residual_hooks(n_layers - 1), cfg, Path(out), device=device, jobs=jobs)
        pred, info = result.val, result.facts
        seconds = time.perf_counter() - t0
    layers = [at_layer(pred, i) for i in range(n_layers)]
    return {
        "seconds_per_layer": seconds / n_layers,
        "accuracy": [float((p.label == p.probe).mean()) for p in layers],
        "control_accuracy": [float((p.position_control_label == p.position_control).mean()) for p in layers],
        "n_iter": [info[i]["n_iter"] for i in range(n_layers)],
        "convergence_warnings": sum(info[i]["convergence_warnings"] for i in range(n_layers)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--layers", type=int, default=4, help="layers (streams) to fit")
    parser.add_argument("--scale", type=int, default=1, help="training prompts = 1,430 x scale")
    parser.add_argument("--real", action="store_true", help="the workspace's data/activations instead")
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["sklearn_sequential", "sklearn_parallel", "sklearn_converged", "torch"],
        choices=["sklearn_sequential", "sklearn_parallel", "sklearn_converged", "torch"],
    )
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = ProbeConfig()
    with tempfile.TemporaryDirectory() as tmp:
        if args.real:
            train, val = (Split.load(prompts_path(s), f"data/activations/{s}", "last") for s in ("train", "val"))
            n_layers = min(args.layers, len([h for h in stored_hooks(train.act_dir) if "hook_resid" in h]))
            d_model = read_meta(hook_path(train.act_dir, EMBEDDINGS)).shape[0]
            data = "real: data/activations"
        else:
            train = synthetic_split(Path(tmp) / "train", 1430 * args.scale, args.layers, args.d_model, seed=0)
            val = synthetic_split(Path(tmp) / "val", 2560, args.layers, args.d_model, seed=1)
            n_layers, d_model, data = args.layers, args.d_model, f"synthetic x{args.scale}"
        print(
            f"{data}: {len(train.points.rows)} train / {len(val.points.rows)} val points, d_model {d_model}, "
            f"{n_layers} layers, probe + position-shuffled control per layer"
        )
        configs = {
            "sklearn_sequential": (cfg, 1),
            "sklearn_parallel": (cfg, None),
            "sklearn_converged": (dataclasses.replace(cfg, tol=1e-6), None),
            "torch": (dataclasses.replace(cfg, backend="torch"), None),
        }
        results = {}
        for name in args.configs:
            c, jobs = configs[name]
            results[name] = r = run(train, val, n_layers, c, jobs, device if name == "torch" else "cpu")
            print(
                f"{name:19s} {r['seconds_per_layer']:7.2f} s/layer  accuracy "
                + " ".join(f"{a:.4f}" for a in r["accuracy"])
                + f"  iterations {r['n_iter']}  convergence warnings {r['convergence_warnings']}",
                flush=True,
            )
    # accuracy gaps against the fully converged probe (tol 1e-6), which is what every
    # backend approximates; scikit-learn's default tol can stop short on correlated features
    ref_name = next((n for n in ("sklearn_converged", "sklearn_parallel", "sklearn_sequential") if n in results), None)
    ref = results[ref_name] if ref_name else None
    for r in results.values():
        for base in ("sklearn_sequential", "sklearn_parallel"):
            if base in results:
                r[f"speedup_vs_{base}"] = results[base]["seconds_per_layer"] / r["seconds_per_layer"]
        if ref is not None:
            pairs = zip(r["accuracy"] + r["control_accuracy"], ref["accuracy"] + ref["control_accuracy"], strict=True)
            r["accuracy_reference"] = ref_name
            r["max_accuracy_gap_pp"] = 100 * max(abs(a - b) for a, b in pairs)
    t = results.get("torch")
    if t is not None and ref is not None:
        print(
            "torch backend: "
            + ", ".join(
                f"{t[f'speedup_vs_{b}']:.1f}x {b}" for b in ("sklearn_sequential", "sklearn_parallel") if b in results
            )
            + f" (target >= 5x); largest accuracy gap to {ref_name} "
            f"{t['max_accuracy_gap_pp']:.2f} pp (target <= 0.5)"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    name = "probes_real" if args.real else f"probes_d{args.d_model}_x{args.scale}"
    save(
        name,
        {
            "args": vars(args),
            "device": device,
            "data": data,
            "d_model": d_model,
            "n_layers": n_layers,
            "n_train": len(train.points.rows),
            "results": results,
            "peak_rss_mb": peak,
        },
    )


if __name__ == "__main__":
    main()
