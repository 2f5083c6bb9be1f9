"""Stage `activations`: every residual stream (and any extra hook) for every prompt token, to HDF5.

Run-time knobs that must not invalidate results are environment variables, not params:
EMERGENT_POS_DEVICE (auto | cpu | cuda[:N], default auto) and
EMERGENT_POS_BATCH_TOKENS (tokens per forward batch; default: on CPU a cache-sized
batch for the model's width, 16384 on a GPU; see extract.default_batch_tokens).
"""

import logging
import os

import torch

from emergent_pos.activations.config import ActivationsConfig
from emergent_pos.activations.extract import (
    check_disk,
    default_batch_tokens,
    estimate_bytes,
    hook_shapes,
    write_activations,
)
from emergent_pos.activations.store import ACTIVATIONS_DIR
from emergent_pos.config import read_params, section
from emergent_pos.dataset.prompts import SPLITS, prompt_token_ids, prompts_path
from emergent_pos.io.cli import PARAMS, env_int, run
from emergent_pos.io.files import file_sha256, read_parquet
from emergent_pos.model.hooks import residual_hooks
from emergent_pos.model.load import MODEL_DIR, load_bridge, read_card, resolve_device

logger = logging.getLogger("stages.activations")


def main() -> None:
    cfg = section(read_params(PARAMS), "activations", ActivationsConfig)
    device = resolve_device(os.environ.get("EMERGENT_POS_DEVICE", "auto"))
    card = read_card()
    batch_tokens = env_int("EMERGENT_POS_BATCH_TOKENS", default_batch_tokens(card["d_model"], device))
    tables = {s: read_parquet(prompts_path(s), columns=["position", "token_id"]) for s in SPLITS}
    hooks = residual_hooks(card["n_layers"])
    hooks += [h for h in cfg.extra_hooks if h not in hooks]
    bridge = load_bridge(MODEL_DIR, device, cfg.processing)
    shapes = hook_shapes(bridge, hooks)
    needed = sum(estimate_bytes(len(t), shapes, cfg.dtype) for t in tables.values())
    logger.info(
        "model %s: %d hooks (%s); %s tokens; about %.2f GiB of %s; device %s (%d threads), "
        "batches of %d tokens, forward pass in %s",
        card["name"],
        len(hooks),
        ", ".join(f"{h} {list(s)}" for h, s in zip(hooks, shapes, strict=True)),
        {s: len(t) for s, t in tables.items()},
        needed / 2**30,
        cfg.dtype,
        device,
        torch.get_num_threads(),
        batch_tokens,
        cfg.compute_dtype,
    )
    check_disk(ACTIVATIONS_DIR, needed)
    pad_id = bridge.tokenizer.pad_token_id if bridge.tokenizer.pad_token_id is not None else 0
    for split, table in tables.items():
        meta = {
            "model_name": card["name"],
            "prompts_sha256": file_sha256(prompts_path(split)),
            "processing": cfg.processing,
        }
        timing = write_activations(
            bridge,
            prompt_token_ids(table),
            ACTIVATIONS_DIR / split,
            meta,
            hooks,
            shapes,
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
