"""Batched forward passes through the TransformerLens bridge, streamed to HDF5.

Only the residual streams are kept, captured by hooks; the pass stops right after the
last block (TransformerLens's own ``StopAtLayerException``), so the unembedding, which
the probes never use, is not computed. Batches are consecutive prompts right-padded to
the longest one (harmless for a causal model: padding comes after every real token),
sized by a token budget. A writer thread drains a bounded queue into the layer files,
so disk I/O overlaps the next forward pass and memory stays at a few batches.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from emergent_pos.store import LayerMeta, LayerWriter, hook_names, layer_path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    """Consecutive prompts whose real tokens occupy rows ``[row, row + n_rows)`` of the store."""

    row: int
    tokens: torch.Tensor  # (batch, max_len), right-padded
    lengths: list[int]

    @property
    def n_rows(self) -> int:
        return sum(self.lengths)


def plan_batches(seqs: list[np.ndarray], batch_tokens: int, pad_id: int) -> Iterator[Batch]:
    """Group consecutive prompts so that ``batch x max_len <= batch_tokens`` (at least one)."""
    row, i = 0, 0
    while i < len(seqs):
        j, longest = i, 0
        while j < len(seqs) and max(longest, len(seqs[j])) * (j - i + 1) <= batch_tokens:
            longest = max(longest, len(seqs[j]))
            j += 1
        j = max(j, i + 1)
        group = seqs[i:j]
        width = max(len(s) for s in group)
        tokens = torch.full((len(group), width), pad_id, dtype=torch.long)
        for k, s in enumerate(group):
            tokens[k, : len(s)] = torch.from_numpy(s.astype(np.int64))
        batch = Batch(row, tokens, [len(s) for s in group])
        yield batch
        row += batch.n_rows
        i = j


def residual_streams(bridge: Any, tokens: torch.Tensor, names: list[str]) -> list[torch.Tensor]:
    """``[batch, pos, d_model]`` residual stream at each hook, in ``names`` order.

    The hook of the last name raises TransformerLens's ``StopAtLayerException``, which
    the bridge's forward catches: nothing after the last stored layer is computed.
    """
    from transformer_lens.model_bridge.exceptions import StopAtLayerException

    captured: dict[str, torch.Tensor] = {}

    def saver(name: str) -> Any:
        # hook.name is the bridge's canonical name (``blocks.0.hook_in``), so key by the
        # alias we asked for
        def save(tensor: torch.Tensor, hook: Any) -> torch.Tensor:
            captured[name] = tensor.detach()
            if name == names[-1]:
                raise StopAtLayerException(tensor)
            return tensor

        return save

    with torch.inference_mode(), bridge.hooks(fwd_hooks=[(n, saver(n)) for n in names]):
        bridge(tokens, return_type=None)
    return [captured[n] for n in names]


def estimate_bytes(n_tokens: int, d_model: int, n_layers: int, dtype: str) -> int:
    return n_tokens * d_model * (n_layers + 1) * np.dtype(dtype).itemsize


def check_disk(out_dir: Path, needed: int) -> None:
    """Fail before any forward pass when the layer files cannot fit (10% margin)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out_dir).free
    if needed * 1.1 > free:
        raise OSError(
            f"activations need about {needed / 2**30:.2f} GiB in {out_dir} but only {free / 2**30:.2f} GiB is free"
        )


def write_activations(
    bridge: Any,
    seqs: list[np.ndarray],
    out_dir: Path,
    meta: dict[str, Any],
    *,
    dtype: str,
    batch_tokens: int,
    pad_id: int,
    desc: str = "activations",
) -> dict[str, float]:
    """Run every prompt and write ``layer_NN.h5`` for every residual stream; returns timings.

    ``meta`` gives model_name, prompts_sha256 and processing; each file is written under a
    temporary name and renamed only when all its rows are in.
    """
    n_layers, d_model = bridge.cfg.n_layers, bridge.cfg.d_model
    names = hook_names(n_layers)
    n_tokens = int(sum(len(s) for s in seqs))
    out_dir.mkdir(parents=True, exist_ok=True)
    writers = [
        LayerWriter(
            layer_path(out_dir, layer),
            LayerMeta(hook_name=name, layer=layer, d_model=d_model, dtype=dtype, n_tokens=n_tokens, **meta),
        )
        for layer, name in enumerate(names)
    ]
    q: queue.Queue[tuple[int, list[np.ndarray]] | None] = queue.Queue(maxsize=4)
    errors: list[BaseException] = []
    write_seconds = [0.0]

    def drain() -> None:
        while (item := q.get()) is not None:
            if errors:
                continue
            try:
                t0 = time.perf_counter()
                row, blocks = item
                for writer, block in zip(writers, blocks, strict=True):
                    writer.write(row, block)
                write_seconds[0] += time.perf_counter() - t0
            except BaseException as err:  # re-raised in the main thread
                errors.append(err)

    thread = threading.Thread(target=drain, name="hdf5-writer", daemon=True)
    thread.start()
    device = bridge.cfg.device
    np_dtype = np.dtype(dtype)
    t_start = time.perf_counter()
    try:
        with tqdm(total=n_tokens, desc=desc, unit="tok", unit_scale=True, mininterval=2) as bar:
            for batch in plan_batches(seqs, batch_tokens, pad_id):
                streams = residual_streams(bridge, batch.tokens.to(device), names)
                # (batch, pos, d) -> (sum of real lengths, d), padding dropped
                mask = torch.arange(batch.tokens.shape[1])[None, :] < torch.tensor(batch.lengths)[:, None]
                mask = mask.to(device)
                blocks = [s[mask].to(torch.float32).cpu().numpy().astype(np_dtype, copy=False) for s in streams]
                if errors:
                    raise errors[0]
                q.put((batch.row, blocks))
                bar.update(batch.n_rows)
        q.put(None)
        thread.join()
        if errors:
            raise errors[0]
        for writer in writers:
            writer.commit()
    except BaseException:
        if thread.is_alive():
            errors.append(RuntimeError("aborted"))
            q.put(None)
            thread.join()
        for writer in writers:
            writer.abort()
        raise
    total = time.perf_counter() - t_start
    return {"seconds": total, "write_seconds": write_seconds[0], "tokens_per_second": n_tokens / max(total, 1e-9)}
