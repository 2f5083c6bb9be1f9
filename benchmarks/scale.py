"""What GPT-2 small, a 1B and a 7B model cost here: memory, disk and time (README, Scaling up).

For each shape (random weights: the cost does not depend on the values) it computes
the weights' memory and the bytes per stored token from the config, the disk that the
default params' prompts take under each ``activations.tokens`` and dtype, and the time
of the activations stage. Time is **measured** for the shapes named by ``--measure``
(``write_activations`` through the bridge, HDF5 files included, on ``--tokens``
tokens) and **computed** for the others from the largest measured shape's rate, scaled
by forward FLOPs per token (the pass stops at the last hook: no unembedding). The
baseline is the first measured shape: each line prints its rate relative to it and to
what the FLOP ratio predicts, so the computed rows can be trusted as far as that ratio.

    python benchmarks/scale.py [--measure gpt2-small 1b] [--tokens 2048] [--batch-tokens 1024]

On a GPU, measure all three (7B in float32 needs ~27 GB of GPU memory).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, PretrainedConfig

sys.path.insert(0, str(Path(__file__).parent))
from common import byte_tokenizer, save  # noqa: E402

from emergent_pos.activations.extract import write_activations  # noqa: E402
from emergent_pos.activations.select import rows_to_store  # noqa: E402
from emergent_pos.model.hooks import residual_hooks  # noqa: E402
from emergent_pos.model.load import load_bridge  # noqa: E402

SHAPES: dict[str, PretrainedConfig] = {
    "gpt2-small": GPT2Config(),
    # Llama-3.2-1B's shape (grouped-query attention, tied embeddings)
    "1b": LlamaConfig(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    ),
    # Llama-2-7B's shape
    "7b": LlamaConfig(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
        max_position_embeddings=4096,
    ),
}
SELECTIONS = ("all", "units", "ends")
"""The ``activations.tokens`` choices whose disk the table gives, counted on this checkout's prompts."""


def shape_facts(cfg: PretrainedConfig) -> dict:
    """Parameters (counted on the meta device: no memory), streams and bytes per token."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    # tables looked up, not multiplied; the unembedding is never computed (untied: its own)
    embed = model.get_input_embeddings().weight.numel()
    if not cfg.tie_word_embeddings:
        embed += model.get_output_embeddings().weight.numel()
    pos = getattr(getattr(model, "transformer", None), "wpe", None)
    embed += pos.weight.numel() if pos is not None else 0
    n_layers, d = cfg.num_hidden_layers, cfg.hidden_size
    values = (n_layers + 1) * d
    return {
        "n_params": n_params,
        "flops_per_token": 2 * (n_params - embed),  # the blocks' matmuls; no unembedding
        "streams": n_layers + 1,
        "d_model": d,
        "bytes_per_token": {"float32": 4 * values, "float16": 2 * values},
        "weights_gib_float32": 4 * n_params / 2**30,
    }


def token_counts(root: Path) -> dict[str, int]:
    """Rows under each ``activations.tokens`` choice (``ends``: each unit's last token, the default probe's)."""
    files = sorted((root / "data/prompts").glob("*.parquet"))
    if not files:
        raise SystemExit("benchmarks/scale.py counts the stored rows of data/prompts: run `dvc repro prompts` first")
    tables = [pd.read_parquet(f) for f in files]
    return {tokens: sum(len(rows_to_store(t, tokens)) for t in tables) for tokens in SELECTIONS}


def make_model(root: Path, name: str, cfg: PretrainedConfig) -> Path:
    """A random-weight model of ``cfg`` saved like the model stage does (card included)."""
    tok = byte_tokenizer()
    out = root / name
    AutoModelForCausalLM.from_config(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    card = {"name": name, "init": "random", "architecture": cfg.architectures or type(cfg).__name__}
    card |= {"n_layers": cfg.num_hidden_layers, "d_model": cfg.hidden_size, "n_ctx": 1024}
    (out / "model_card.json").write_text(json.dumps(card))
    return out


def measure(name: str, cfg: PretrainedConfig, n_tokens: int, batch_tokens: int, device: str) -> float:
    """Tokens per second of the activations stage's writer, every residual stream, float32."""
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 250, size=33) for _ in range(max(1, n_tokens // 33))]
    with tempfile.TemporaryDirectory() as tmp:
        bridge = load_bridge(make_model(Path(tmp), name, cfg), device)
        hooks = residual_hooks(cfg.num_hidden_layers)
        shapes = [(cfg.hidden_size,)] * len(hooks)
        meta = {"model_name": name, "prompts_sha256": "x", "processing": "raw"}
        args = {"dtype": "float32", "batch_tokens": batch_tokens, "pad_id": 0}
        write_activations(bridge, seqs[:2], Path(tmp) / "warm", meta, hooks, shapes, **args)
        t0 = time.perf_counter()
        write_activations(bridge, seqs, Path(tmp) / "acts", meta, hooks, shapes, **args)
        rate = sum(map(len, seqs)) / (time.perf_counter() - t0)
        del bridge
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", nargs="*", choices=sorted(SHAPES), default=["gpt2-small", "1b"])
    parser.add_argument("--tokens", type=int, default=2048, help="tokens per measured run (33-token prompts)")
    parser.add_argument("--batch-tokens", type=int, default=1024)
    parser.add_argument("--root", type=Path, default=Path("."), help="project whose data/prompts sets the counts")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    counts = token_counts(args.root)
    facts = {name: shape_facts(cfg) for name, cfg in SHAPES.items()}
    rates: dict[str, float] = {}
    for name in args.measure:
        rates[name] = measure(name, SHAPES[name], args.tokens, args.batch_tokens, device)
        base = next(iter(rates))
        predicted = facts[base]["flops_per_token"] / facts[name]["flops_per_token"]
        print(
            f"{name}: {rates[name]:.1f} tokens/s measured on {device} = {rates[name] / rates[base]:.3f}x {base} "
            f"(the FLOP ratio predicts {predicted:.3f}x)"
        )
    print(f"prompt tokens of the default params: {counts}")
    rows = {}
    for name, f in facts.items():
        ref = max(rates, key=lambda r: facts[r]["flops_per_token"]) if rates else None
        if name in rates:
            rate, how = rates[name], "measured"
        elif ref is not None:
            rate, how = rates[ref] * facts[ref]["flops_per_token"] / f["flops_per_token"], f"computed from {ref}"
        else:
            rate, how = float("nan"), "not measured"
        disk = {
            f"{tokens}_{dtype}_gib": counts[tokens] * f["bytes_per_token"][dtype] / 2**30
            for tokens in SELECTIONS
            for dtype in ("float32", "float16")
        }
        rows[name] = {**f, **disk, "tokens_s": rate, "rate": how, "stage_hours": counts["all"] / rate / 3600}
        print(
            f"{name}: {f['n_params'] / 1e9:.2f}B params, weights {f['weights_gib_float32']:.1f} GiB float32; "
            f"{f['streams']} x {f['d_model']} = {f['bytes_per_token']['float16'] / 1024:.0f} KiB/token in float16; "
            f"disk all/units/ends float16 {disk['all_float16_gib']:.1f}/{disk['units_float16_gib']:.1f}/"
            f"{disk['ends_float16_gib']:.1f} GiB (float32 x2); {rate:.1f} tokens/s ({how}): "
            f"{rows[name]['stage_hours']:.2f} h for the activations stage on {device}"
        )
    save(
        f"scale_{device}",
        {"device": device, "counts": counts, "args": {**vars(args), "root": str(args.root)}, "shapes": rows},
    )


if __name__ == "__main__":
    main()
