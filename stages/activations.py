"""Stage `activations`: every residual stream (and any extra hook) for the stored prompt tokens, to HDF5.

Which tokens are stored is the section's own param (activations.tokens: all | units |
bounds | ends, activations/select.py). Run-time knobs that must not invalidate results are environment
variables, not params: EMERGENT_POS_DEVICE (auto | cpu | cuda[:N], default auto),
EMERGENT_POS_PLACEMENT (a model split over devices; see model/placement.py) and
EMERGENT_POS_BATCH_TOKENS (tokens per forward batch; default: on CPU a cache-sized
batch for the model's width, on a GPU up to 16384 tokens or 2 GiB of captured streams;
see extract.default_batch_tokens).
"""

import logging

import numpy as np
import torch

from emergent_pos.activations.config import ActivationsConfig
from emergent_pos.activations.extract import (
    check_disk,
    default_batch_tokens,
    estimate_bytes,
    hook_shapes,
    write_activations,
)
from emergent_pos.activations.select import rows_to_store
from emergent_pos.activations.store import ACTIVATIONS_DIR
from emergent_pos.config import ParamError, read_params, section
from emergent_pos.dataset.prompts import SPLITS, prompt_token_ids, prompts_path
from emergent_pos.io.cli import PARAMS, env_int, run
from emergent_pos.io.files import file_sha256, read_parquet
from emergent_pos.io.resources import gib
from emergent_pos.model.hooks import residual_hooks
from emergent_pos.model.load import MODEL_DIR, load_bridge, read_card
from emergent_pos.model.placement import placement_from_env

logger = logging.getLogger("stages.activations")


def main() -> None:
    raw = read_params(PARAMS)
    cfg = section(raw, "activations", ActivationsConfig)
    placement = placement_from_env()
    card = read_card()
    tables = {s: read_parquet(prompts_path(s)) for s in SPLITS}
    stored = {s: rows_to_store(t, cfg.tokens) for s, t in tables.items()}
    empty = [s for s, r in stored.items() if not len(r)]
    if empty:
        raise ParamError("activations.tokens", cfg.tokens, f"selects no token of the {empty[0]} split")
    n_rows = sum(len(r) for r in stored.values())
    hooks = residual_hooks(card["n_layers"])
    # the residual streams alone, checked before the model loads (minutes for a large one)
    check_disk(ACTIVATIONS_DIR, estimate_bytes(n_rows, [(card["d_model"],)] * len(hooks), cfg.dtype))
    hooks += [h for h in cfg.extra_hooks if h not in hooks]
    bridge = load_bridge(MODEL_DIR, placement, cfg.processing)
    device = str(bridge.cfg.device)
    shapes = hook_shapes(bridge, hooks)
    width = sum(int(np.prod(s)) for s in shapes)  # captured values per token
    batch_tokens = env_int("EMERGENT_POS_BATCH_TOKENS", default_batch_tokens(card["d_model"], device, width))
    needed = estimate_bytes(n_rows, shapes, cfg.dtype)
    label = cfg.tokens
    logger.info(
        "model %s: writing %d hooks (%s) of %s tokens (%s of %s prompt tokens) as %s: about %s; "
        "forward pass in %s on %s (%d threads), batches of %d tokens",
        card["name"],
        len(hooks),
        ", ".join(f"{h} {list(s)}" for h, s in zip(hooks, shapes, strict=True)),
        label,
        {s: len(r) for s, r in stored.items()},
        {s: len(t) for s, t in tables.items()},
        cfg.dtype,
        gib(needed),
        cfg.compute_dtype,
        placement if placement.split else device,
        torch.get_num_threads(),
        batch_tokens,
    )
    check_disk(ACTIVATIONS_DIR, needed)
    pad_id = bridge.tokenizer.pad_token_id if bridge.tokenizer.pad_token_id is not None else 0
    for split, table in tables.items():
        meta = {
            "model_name": card["name"],
            "prompts_sha256": file_sha256(prompts_path(split)),
            "processing": cfg.processing,
            "tokens": label,
        }
        timing = write_activations(
            bridge,
            prompt_token_ids(table[["position", "token_id"]]),
            ACTIVATIONS_DIR / split,
            meta,
            hooks,
            shapes,
            dtype=cfg.dtype,
            batch_tokens=batch_tokens,
            pad_id=pad_id,
            compute_dtype=cfg.compute_dtype,
            rows=stored[split],
            desc=f"activations {split}",
        )
        logger.info(
            "%s: %d tokens in %.1fs (%.0f tokens/s; %.1fs spent writing, overlapped); %d stored",
            split,
            len(table),
            timing["seconds"],
            timing["tokens_per_second"],
            timing["write_seconds"],
            len(stored[split]),
        )


if __name__ == "__main__":
    run(main)
