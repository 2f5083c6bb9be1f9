"""Stage `activations`: residual streams of every layer for every prompt token, to HDF5.

Run-time knobs that must not invalidate results are environment variables, not params:
EMERGENT_POS_DEVICE (auto | cpu | cuda[:N], default auto) and
EMERGENT_POS_BATCH_TOKENS (tokens per forward batch; default: on CPU a cache-sized
batch for the model's width, 16384 on a GPU; see activations.default_batch_tokens).
"""

import logging
import os
from pathlib import Path

import pandas as pd
import torch

from emergent_pos.activations import check_disk, default_batch_tokens, estimate_bytes, write_activations
from emergent_pos.cli import env_int, run
from emergent_pos.config import load_params
from emergent_pos.model import load_bridge, read_card, resolve_device
from emergent_pos.prompts import SPLITS, file_hash, prompt_token_ids

logger = logging.getLogger("stages.activations")


def main() -> None:
    cfg = load_params("params.yaml", ["activations"]).activations
    device = resolve_device(os.environ.get("EMERGENT_POS_DEVICE", "auto"))
    card = read_card("data/model")
    batch_tokens = env_int("EMERGENT_POS_BATCH_TOKENS", default_batch_tokens(card["d_model"], device))
    out = Path("data/activations")
    tables = {s: pd.read_parquet(f"data/prompts/{s}.parquet", columns=["position", "token_id"]) for s in SPLITS}
    needed = sum(estimate_bytes(len(t), card["d_model"], card["n_layers"], cfg.dtype) for t in tables.values())
    logger.info(
        "model %s: %d layers + embeddings, d_model %d; %s tokens; about %.2f GiB of %s; device %s (%d threads), "
        "batches of %d tokens, forward pass in %s",
        card["name"],
        card["n_layers"],
        card["d_model"],
        {s: len(t) for s, t in tables.items()},
        needed / 2**30,
        cfg.dtype,
        device,
        torch.get_num_threads(),
        batch_tokens,
        cfg.compute_dtype,
    )
    check_disk(out, needed)
    bridge = load_bridge("data/model", device, cfg.processing)
    pad_id = bridge.tokenizer.pad_token_id if bridge.tokenizer.pad_token_id is not None else 0
    for split, table in tables.items():
        meta = {
            "model_name": card["name"],
            "prompts_sha256": file_hash(f"data/prompts/{split}.parquet"),
            "processing": cfg.processing,
        }
        timing = write_activations(
            bridge,
            prompt_token_ids(table),
            out / split,
            meta,
            dtype=cfg.dtype,
            batch_tokens=batch_tokens,
            pad_id=pad_id,
            compute_dtype=cfg.compute_dtype,
            desc=f"activations {split}",
        )
        logger.info(
            "%s: %d tokens in %.1fs (%.0f tokens/s; %.1fs spent writing, overlapped)",
            split,
            len(table),
            timing["seconds"],
            timing["tokens_per_second"],
            timing["write_seconds"],
        )


if __name__ == "__main__":
    run(main)
