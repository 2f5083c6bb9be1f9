"""Activations throughput against baselines measured in the same run.

A GPT-2-small-shaped model (``GPT2Config()`` defaults, random weights: the cost does not
depend on the values), prompts of 33 tokens. Measures:

* the float32 matmul rate on the spot, and the forward-pass bound it implies
  (about 170 MFLOP per token without the unembedding);
* baseline: plain Hugging Face ``GPT2Model`` with forward hooks capturing all 13
  residual streams, nothing written;
* ours: ``write_activations`` through the TransformerLens bridge, HDF5 files included;
* HDF5: our layer files against a raw sequential write (+fsync) of the same bytes.

    python benchmarks/activations.py [--tokens 8250] [--batch-tokens 8192]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

sys.path.insert(0, str(Path(__file__).parent))
from common import save  # noqa: E402

from emergent_pos.activations import write_activations  # noqa: E402
from emergent_pos.model import load_bridge  # noqa: E402
from emergent_pos.store import LayerMeta, LayerWriter  # noqa: E402


def matmul_gflops(seconds: float = 2.0) -> float:
    a, b = torch.randn(2048, 768), torch.randn(768, 3072)
    a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    return 2 * 2048 * 768 * 3072 * n / (time.perf_counter() - t0) / 1e9


def flops_per_token(cfg: GPT2Config, ctx: int) -> float:
    d, n_layers = cfg.n_embd, cfg.n_layer
    dense = 2 * n_layers * (4 * d * d + 2 * 4 * d * d)  # qkv + out, mlp up + down
    attention = 2 * n_layers * 2 * ctx * d  # scores + weighted sum, causal average ~ctx
    return dense + attention


def make_model(root: Path) -> Path:
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["a b c"], vocab_size=260, special_tokens=["<|endoftext|>"], show_progress=False)
    tok = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    model = GPT2LMHeadModel(GPT2Config())  # 50,257 vocab: the unembedding we avoid computing
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    (root / "model" / "model_card.json").write_text(
        '{"name": "gpt2-shape", "init": "random", "architecture": "GPT2LMHeadModel", "n_layers": 12, "d_model": 768}'
    )
    return root / "model"


def hf_hooks_baseline(model_dir: Path, seqs: list[np.ndarray], batch: int) -> float:
    model = GPT2LMHeadModel.from_pretrained(model_dir).transformer.eval()
    captured: list[torch.Tensor] = []
    handles = [model.drop.register_forward_hook(lambda m, i, o: captured.append(o))]
    handles += [
        blk.register_forward_hook(lambda m, i, o: captured.append(o[0] if isinstance(o, tuple) else o))
        for blk in model.h
    ]
    tokens = torch.from_numpy(np.stack(seqs))
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(tokens), batch):
            captured.clear()
            model(tokens[i : i + batch])
            [c.numpy() for c in captured]
    for h in handles:
        h.remove()
    return tokens.numel() / (time.perf_counter() - t0)


def hdf5_vs_raw(root: Path, n_tokens: int, d_model: int = 768, n_files: int = 13) -> dict:
    block = np.random.default_rng(0).normal(size=(4096, d_model)).astype(np.float32)
    n_blocks = max(1, n_tokens // 4096)
    total = n_blocks * block.nbytes * n_files
    t0 = time.perf_counter()
    for f in range(n_files):
        with open(root / f"raw_{f}.bin", "wb") as fh:
            for _ in range(n_blocks):
                block.tofile(fh)
            fh.flush()
            os.fsync(fh.fileno())
    raw = total / (time.perf_counter() - t0) / 2**20
    t0 = time.perf_counter()
    writers = [
        LayerWriter(
            root / f"layer_{f:02d}.h5", LayerMeta("x", f"h{f}", f, d_model, "float32", n_blocks * 4096, "x", "raw")
        )
        for f in range(n_files)
    ]
    for i in range(n_blocks):
        for w in writers:
            w.write(i * 4096, block)
    for w in writers:
        w.commit()
    h5 = total / (time.perf_counter() - t0) / 2**20
    return {"bytes": total, "raw_mb_s": raw, "hdf5_mb_s": h5, "ratio": h5 / raw}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8250, help="250 prompts of 33 tokens")
    parser.add_argument("--batch-tokens", type=int, default=8192)
    parser.add_argument("--hdf5-tokens", type=int, default=40960, help="tokens per file in the I/O comparison")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 250, size=33) for _ in range(max(1, args.tokens // 33))]
    n_tokens = sum(map(len, seqs))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = make_model(root)
        gflops = matmul_gflops()
        bound = gflops * 1e9 / flops_per_token(GPT2Config(), 33)
        print(f"matmul {gflops:.0f} GFLOP/s -> forward bound {bound:.0f} tokens/s ({device})")
        hf = hf_hooks_baseline(model_dir, seqs, max(1, args.batch_tokens // 33))
        print(f"baseline HF GPT2Model + hooks, 13 streams: {hf:.0f} tokens/s")
        bridge = load_bridge(model_dir, device)
        t0 = time.perf_counter()
        timing = write_activations(
            bridge,
            seqs,
            root / "acts",
            {"model_name": "x", "prompts_sha256": "x", "processing": "raw"},
            dtype="float32",
            batch_tokens=args.batch_tokens,
            pad_id=0,
        )
        ours = n_tokens / (time.perf_counter() - t0)
        print(
            f"ours, bridge + HDF5 files: {ours:.0f} tokens/s = {ours / hf:.2f}x the HF baseline, "
            f"{ours / bound:.2f} of the matmul bound (targets 0.9x, 0.75)"
        )
        io = hdf5_vs_raw(root, args.hdf5_tokens)
        print(
            f"HDF5 layer files {io['hdf5_mb_s']:.0f} MB/s vs raw write {io['raw_mb_s']:.0f} MB/s: "
            f"{io['ratio']:.2f}x (target 0.8x)"
        )
    save(
        "activations",
        {
            "args": vars(args),
            "device": device,
            "tokens": n_tokens,
            "matmul_gflops": gflops,
            "forward_bound_tokens_s": bound,
            "hf_hooks_tokens_s": hf,
            "ours_tokens_s": ours,
            "ours_vs_hf": ours / hf,
            "ours_vs_bound": ours / bound,
            "write_seconds": timing["write_seconds"],
            "hdf5": io,
        },
    )


if __name__ == "__main__":
    main()
