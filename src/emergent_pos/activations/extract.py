"""Batched forward passes through the TransformerLens bridge, streamed to HDF5 by hook.

The requested hooks (every residual stream, plus any extra ones) are captured; the pass
stops as soon as the last of them has fired (TransformerLens's own
``StopAtLayerException``), so nothing after it, the unembedding included, is computed.
Batches are consecutive prompts right-padded to the longest one (harmless for a causal
model: padding comes after every real token), sized by a token budget, run under
``torch.inference_mode`` and optionally autocast to float16/bfloat16. A writer thread
drains a bounded queue into the hook files, so disk I/O overlaps the next forward pass
and memory stays at a few batches. On a GPU the main thread never waits for the device:
each batch is copied into pinned host memory asynchronously and the writer thread waits
for that copy, while the next batch runs.
"""

from __future__ import annotations

import errno
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

from emergent_pos.activations.store import CHUNK_BYTES, HookMeta, HookWriter, hook_path
from emergent_pos.errors import UserError
from emergent_pos.io.resources import gib
from emergent_pos.model.hooks import capture

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    """Consecutive prompts, right-padded; the tokens at flat positions ``index`` of the
    ``(batch, width)`` grid go to store rows ``[row, row + len(index))``."""

    row: int
    tokens: torch.Tensor  # (batch, max_len), right-padded
    index: torch.Tensor  # flat positions of the stored tokens, in store order
    n_tokens: int  # real (unpadded) tokens

    @property
    def n_rows(self) -> int:
        return len(self.index)


def plan_batches(
    seqs: list[np.ndarray], batch_tokens: int, pad_id: int, keep: list[np.ndarray] | None = None
) -> Iterator[Batch]:
    """Group consecutive prompts so that ``batch x max_len <= batch_tokens`` (at least one).

    ``keep``: per prompt, which of its tokens are stored (default: all). The index is
    built on the host: a boolean mask on a GPU would make the host wait for the device.
    """
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
        flat = []
        for k, s in enumerate(group):
            tokens[k, : len(s)] = torch.from_numpy(s.astype(np.int64))
            at = np.arange(len(s)) if keep is None else np.flatnonzero(keep[i + k])
            flat.append(at + k * width)
        batch = Batch(row, tokens, torch.from_numpy(np.concatenate(flat).astype(np.int64)), sum(map(len, group)))
        yield batch
        row += batch.n_rows
        i = j


def hook_shapes(bridge: Any, names: list[str]) -> list[tuple[int, ...]]:
    """Per-token shape of each hook's activation, from a forward pass of 2 x 7 tokens.

    Fails in one line for a hook the model does not have, or one whose activation is not
    laid out ``[batch, pos, ...]`` (attention patterns are ``[batch, head, q, k]``).
    """
    known = set(bridge.hook_dict)
    unknown = [n for n in names if n not in known]
    if unknown:
        blocks = sorted({n.split(".", 2)[2] for n in known if n.startswith("blocks.0.")})
        raise UserError(
            f"bad parameter activations.extra_hooks: {unknown[0]!r} is not a hook of this model; "
            f"per-block hooks are blocks.N.<one of {', '.join(blocks)}>"
        )
    batch, pos = 2, 7
    tokens = torch.zeros((batch, pos), dtype=torch.long, device=bridge.cfg.device)
    shapes = []
    got = capture(bridge, tokens, names)
    for name in names:
        act = got[name]
        if tuple(act.shape[:2]) != (batch, pos):
            raise UserError(
                f"bad parameter activations.extra_hooks: {name!r} gives {list(act.shape)} for {batch} x {pos} tokens, "
                "not [batch, pos, ...]: it cannot be stored per token"
            )
        shapes.append(tuple(int(s) for s in act.shape[2:]))
    return shapes


def default_batch_tokens(d_model: int, device: str, captured: int | None = None) -> int:
    """Tokens per forward batch when EMERGENT_POS_BATCH_TOKENS is unset.

    On a CPU the fastest batch keeps the MLP's ``batch x 4 d_model`` float32 intermediate
    within ~12 MiB of cache (GPT-2 small: 1,024 tokens; the toy organism: 6,144); beyond
    that every elementwise op streams from memory (benchmarks/activations.py). A GPU
    wants large batches, up to 16,384 tokens or 2 GiB of captured float32 values
    (``captured`` per token; a 7B model's 33 x 4,096 streams: 3,968 tokens), whichever
    is fewer, since the queue to the writer holds a few batches in pinned host memory too.
    """
    if device.startswith("cuda"):
        per_token = 4 * (captured or d_model)
        return max(256, min(16384, GPU_BATCH_BYTES // per_token // 128 * 128))
    return max(256, min(16384, (12 << 20) // (4 * d_model * 4)))


GPU_BATCH_BYTES = 2 << 30


def estimate_bytes(n_tokens: int, shapes: list[tuple[int, ...]], dtype: str) -> int:
    """Bytes the hook files of ``n_tokens`` rows will take (before HDF5's small overhead)."""
    return n_tokens * sum(int(np.prod(s)) for s in shapes) * np.dtype(dtype).itemsize


class DiskFull(UserError):
    """The disk filled up (or would have) while hook files were written.

    ``hard_exit``: HDF5 failed to close a file on the full disk; the library then holds
    a broken handle that crashes the interpreter at exit, so the stage ends with
    ``os._exit`` once the temporary files are gone.
    """

    def __init__(self, message: str, hard_exit: bool = False) -> None:
        super().__init__(message)
        self.hard_exit = hard_exit


def _disk_full(path: Path, remaining: int, hard_exit: bool = False) -> DiskFull:
    return DiskFull(
        f"no space left on device while writing {path}: free at least {gib(remaining * 1.1 + DISK_HEADROOM)} "
        f"on {path.parent} (or move data/ to a larger disk) and rerun `dvc repro activations`",
        hard_exit,
    )


def check_disk(out_dir: Path, needed: int) -> None:
    """Fail before any forward pass when the hook files cannot fit (10% margin)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out_dir).free
    if needed * 1.1 > free:
        raise DiskFull(f"activations need about {gib(needed)} in {out_dir} but only {gib(free)} is free")


def is_disk_full(err: BaseException) -> bool:
    """ENOSPC, whether from Python or from inside HDF5 (an OSError or, when a dataset's
    cached chunks fail to flush on close, a RuntimeError; the errno is in the message)."""
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return True
    return isinstance(err, OSError | RuntimeError) and "No space left on device" in str(err)


# Free space kept beyond a batch's bytes, plus one chunk per file (HDF5 caches a chunk
# per dataset and writes it on close): HDF5's own metadata and chunk rounding.
DISK_HEADROOM = 4 << 20

COMPUTE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class HostBlocks:
    """One batch's rows of every stream on the host, readable once the ``ready`` events
    (one per GPU whose copies are still in flight) have fired."""

    row: int
    blocks: list[torch.Tensor]
    ready: list[Any]  # torch.cuda.Event

    def arrays(self) -> list[np.ndarray]:
        for event in self.ready:
            event.synchronize()
        return [b.numpy() for b in self.blocks]


def to_host(row: int, streams: list[torch.Tensor], index: torch.Tensor, dtype: torch.dtype) -> HostBlocks:
    """Rows ``index`` of each ``[batch, pos, ...]`` activation, flattened to ``[batch * pos, ...]``,
    in the storage dtype, on the host.

    Unstored tokens are dropped and the dtype converted on each stream's own device (the
    blocks of a split model sit on several), so only stored bytes cross the bus; from a
    GPU they go into pinned buffers without blocking this thread.
    """
    on: dict[torch.device, torch.Tensor] = {}  # the index, copied once to each device
    host = []
    for s in streams:
        if s.device not in on:
            on[s.device] = index.to(s.device, non_blocking=True)
        r = s.flatten(0, 1).index_select(0, on[s.device]).to(dtype)
        if r.device.type == "cuda":
            h = torch.empty(r.shape, dtype=dtype, pin_memory=True)
            h.copy_(r, non_blocking=True)
            r = h
        host.append(r)
    ready = []
    for device in on:
        if device.type == "cuda":
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(device))
            ready.append(event)
    return HostBlocks(row, host, ready)


def write_activations(
    bridge: Any,
    seqs: list[np.ndarray],
    out_dir: Path,
    meta: dict[str, Any],
    hooks: list[str],
    shapes: list[tuple[int, ...]],
    *,
    dtype: str,
    batch_tokens: int,
    pad_id: int,
    compute_dtype: str = "float32",
    rows: np.ndarray | None = None,
    desc: str = "activations",
) -> dict[str, float]:
    """Run every prompt and write ``{hook}.h5`` for every hook; returns timings.

    ``shapes`` are the hooks' per-token shapes (``hook_shapes``); ``meta`` gives
    model_name, prompts_sha256, processing and tokens (which are stored: ``rows``, the
    ascending rows of the prompts table, i.e. of the concatenated ``seqs``; default
    all). Each file is written under a temporary name and renamed only when all its
    rows are in.
    """
    if rows is not None and "tokens" not in meta:
        raise ValueError("meta must name which tokens a subset of rows is (tokens: units, bounds, ends)")
    lengths = [len(s) for s in seqs]
    n_tokens = int(sum(lengths))
    table_rows = np.arange(n_tokens) if rows is None else np.asarray(rows, dtype=np.int64)
    n_rows = len(table_rows)
    keep = None
    if rows is not None:
        mask = np.zeros(n_tokens, dtype=bool)
        mask[table_rows] = True
        keep = np.split(mask, np.cumsum(lengths)[:-1])
    out_dir.mkdir(parents=True, exist_ok=True)
    writers = [
        HookWriter(
            hook_path(out_dir, name),
            HookMeta(
                hook_name=name,
                shape=shape,
                dtype=dtype,
                n_tokens=n_tokens,
                n_rows=n_rows,
                compute_dtype=compute_dtype,
                **meta,
            ),
            table_rows,
        )
        for name, shape in zip(hooks, shapes, strict=True)
    ]
    row_bytes = [int(np.prod(shape)) * np.dtype(dtype).itemsize for shape in shapes]
    q: queue.Queue[HostBlocks | None] = queue.Queue(maxsize=4)
    errors: list[BaseException] = []
    write_seconds = [0.0]
    current = [writers[0].path]  # the file being written when something fails

    def remaining() -> int:
        return sum((n_rows - w.written) * b for w, b in zip(writers, row_bytes, strict=True))

    def check_space(block_bytes: int) -> None:
        # HDF5 that hits a full disk leaves a broken file handle behind; stop just before
        if shutil.disk_usage(out_dir).free < block_bytes * 1.1 + DISK_HEADROOM + len(writers) * CHUNK_BYTES:
            raise _disk_full(current[0], remaining())

    # How an interrupted run stops the writer. Not a sentinel through the queue: a signal
    # landing inside the main thread's queue operation can lose the writer's wake-up.
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            try:
                item = q.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is None:
                return
            if errors:
                continue
            try:
                arrays = item.arrays()
                t0 = time.perf_counter()
                check_space(sum(a.nbytes for a in arrays))
                for writer, block in zip(writers, arrays, strict=True):
                    current[0] = writer.path
                    writer.write(item.row, block)
                write_seconds[0] += time.perf_counter() - t0
            except BaseException as err:  # re-raised in the main thread
                errors.append(err)

    thread = threading.Thread(target=drain, name="hdf5-writer", daemon=True)
    thread.start()
    device = torch.device(bridge.cfg.device)
    store_dtype = getattr(torch, dtype)
    autocast = torch.autocast(device.type, dtype=COMPUTE_DTYPES[compute_dtype], enabled=compute_dtype != "float32")
    t_start = time.perf_counter()
    try:
        with tqdm(total=n_tokens, desc=desc, unit="tok", unit_scale=True, mininterval=2) as bar:
            for batch in plan_batches(seqs, batch_tokens, pad_id, keep):
                pinned = device.type == "cuda"
                tokens = batch.tokens.pin_memory() if pinned else batch.tokens
                with autocast:
                    got = capture(bridge, tokens.to(device, non_blocking=True), hooks)
                    streams = [got[h] for h in hooks]
                # (batch, pos, ...) -> (stored tokens, ...): padding and unstored tokens dropped
                index = batch.index.pin_memory() if pinned else batch.index
                host = to_host(batch.row, streams, index, store_dtype)
                if errors:
                    raise errors[0]
                q.put(host)
                bar.update(batch.n_tokens)
        q.put(None)
        thread.join()
        if errors:
            raise errors[0]
        for writer in writers:  # every file complete on disk before any takes its final name
            current[0] = writer.path
            writer.close()
        for writer in writers:
            writer.publish()
    except BaseException as err:
        stop.set()
        thread.join()  # the writer finishes the block in hand, then sees stop
        closed = [writer.abort() for writer in writers]  # every one, even if another fails
        if is_disk_full(err):
            raise _disk_full(current[0], remaining(), hard_exit=not all(closed)) from err
        raise
    total = time.perf_counter() - t_start
    return {"seconds": total, "write_seconds": write_seconds[0], "tokens_per_second": n_tokens / max(total, 1e-9)}
