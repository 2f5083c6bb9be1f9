"""Peak RSS of the activations writer and of a probe fit at two dataset sizes 10x apart.

Each measurement runs in a fresh process (peak RSS is per process). Prints the ratio of
peaks (bounded memory means a ratio near 1 while the data grows 10x) and writes
benchmarks/results/memory.json.

    python benchmarks/memory.py [--prompts 2000] [--d-model 256] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

CHILD = r"""
import json, resource, sys, tempfile
from pathlib import Path
import numpy as np
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast
from tokenizers import ByteLevelBPETokenizer

kind, n_prompts, d_model, workdir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
rng = np.random.default_rng(0)
seqs = [rng.integers(1, 250, size=33) for _ in range(n_prompts)]
if kind == "activations":
    from emergent_pos.activations.extract import write_activations
    from emergent_pos.model.hooks import residual_hooks
    from emergent_pos.model.load import load_bridge
    model_dir = workdir / "model"
    if not model_dir.exists():
        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator(["a b c"], vocab_size=260, special_tokens=["<|endoftext|>"], show_progress=False)
        tok = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
        cfg = GPT2Config(vocab_size=len(tok), n_embd=d_model, n_layer=4, n_head=4, n_positions=64)
        GPT2LMHeadModel(cfg).save_pretrained(model_dir)
        tok.save_pretrained(model_dir)
        (model_dir / "model_card.json").write_text(json.dumps(
            {"name": "bench", "init": "random", "architecture": "GPT2LMHeadModel", "n_layers": 4, "d_model": d_model,
             "n_ctx": 64}))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    bridge = load_bridge(model_dir, "cpu")
    with tempfile.TemporaryDirectory(dir=workdir) as out:
        write_activations(bridge, seqs, Path(out), {"model_name": "bench", "prompts_sha256": "x", "processing": "raw"},
                          residual_hooks(4), [(d_model,)] * 5, dtype="float32", batch_tokens=1024, pad_id=0)
    data_mb = n_prompts * 33 * d_model * 5 * 4 / 2**20
else:
    from emergent_pos.probes.config import ProbeConfig
    from emergent_pos.probes.linear import fit_probe
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = n_prompts * 7
    y = rng.integers(0, 7, n)
    x = rng.normal(size=(n, d_model)).astype(np.float32) + y[:, None] * 0.05
    fit_probe(x, y, ProbeConfig(max_iter=50))
    data_mb = x.nbytes / 2**20
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_rss_mb": peak / 1024, "baseline_rss_mb": base / 1024, "data_mb": data_mb}))
"""


def measure(kind: str, n_prompts: int, d_model: int, workdir: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(n_prompts), str(d_model), str(workdir)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=2000, help="small size; the large one is 10x")
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "memory.json")
    args = parser.parse_args()
    results: dict = {"machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("activations", "probe"):
            small = measure(kind, args.prompts, args.d_model, Path(tmp))
            large = measure(kind, args.prompts * 10, args.d_model, Path(tmp))
            # what the stage itself adds over the imported libraries, at each size
            grow_small = small["peak_rss_mb"] - small["baseline_rss_mb"]
            grow_large = large["peak_rss_mb"] - large["baseline_rss_mb"]
            results[kind] = {"small": small, "large": large, "added_mb_ratio_10x_data": grow_large / max(grow_small, 1)}
            print(
                f"{kind:12s} data {small['data_mb']:8.1f} -> {large['data_mb']:8.1f} MB; "
                f"peak RSS {small['peak_rss_mb']:7.1f} -> {large['peak_rss_mb']:7.1f} MB; "
                f"added by the stage {grow_small:6.1f} -> {grow_large:6.1f} MB "
                f"(ratio {grow_large / max(grow_small, 1):.2f} for 10x data)"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
