"""Probe fit time per layer: scikit-learn (the default) against the torch backend.

Synthetic seed-scale data (10,010 training and 17,920 validation points, 7 classes) with a
GPT-2-small width by default; both backends fit the same standardised multinomial L2
problem. Prints accuracy of each and the speed ratio measured in this run.

    python benchmarks/probes.py [--d-model 768] [--n-train 10010] [--layers 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import save  # noqa: E402

from emergent_pos.config import ProbeConfig  # noqa: E402
from emergent_pos.probes import fit_probe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--n-train", type=int, default=10010)
    parser.add_argument("--n-val", type=int, default=17920)
    parser.add_argument("--layers", type=int, default=3, help="independent layers (datasets) to time")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for layer in range(args.layers):
        rng = np.random.default_rng(layer)
        n = args.n_train + args.n_val
        y = rng.integers(0, 7, n)
        x = (rng.normal(size=(7, args.d_model))[y] * 0.08 + rng.normal(size=(n, args.d_model))).astype(np.float32)
        xtr, ytr, xva, yva = x[: args.n_train], y[: args.n_train], x[args.n_train :], y[args.n_train :]
        row = {"layer": layer}
        for backend in ("sklearn", "torch"):
            t0 = time.perf_counter()
            probe = fit_probe(xtr, ytr, ProbeConfig(backend=backend), device=device if backend == "torch" else "cpu")
            row[f"{backend}_seconds"] = time.perf_counter() - t0
            row[f"{backend}_accuracy"] = float(np.mean(probe.predict(xva) == yva))
            row[f"{backend}_iterations"] = probe.n_iter
        row["speedup"] = row["sklearn_seconds"] / row["torch_seconds"]
        rows.append(row)
        print(
            f"layer {layer}: sklearn {row['sklearn_seconds']:.2f}s acc {row['sklearn_accuracy']:.4f} | "
            f"torch ({device}) {row['torch_seconds']:.2f}s acc {row['torch_accuracy']:.4f} | "
            f"torch/sklearn speed ratio {row['speedup']:.2f}x"
        )
    speedup = float(np.median([r["speedup"] for r in rows]))
    print(f"median torch speed-up over scikit-learn: {speedup:.2f}x (target >= 5x at equal accuracy)")
    save("probes", {"args": vars(args), "device": device, "layers": rows, "median_speedup": speedup})


if __name__ == "__main__":
    main()
