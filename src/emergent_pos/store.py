"""HDF5 layout of cached activations: one file per split and layer, hook names as keys.

``data/activations/{split}/layer_NN.h5`` holds one dataset named after the
TransformerLens hook (``blocks.0.hook_resid_pre`` is layer 0, the embeddings;
``blocks.{i}.hook_resid_post`` is layer ``i + 1``), shaped ``[n_tokens, d_model]`` with
rows in the prompts table's order. One file per layer lets ``dvc pull`` fetch a single
layer and lets a changed layer re-upload alone. Files are written fresh under a
temporary name (never opened for update: DVC may hard-link cached files), without
timestamps, so identical inputs give identical bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from emergent_pos.atomic import TMP_PREFIX

FORMAT_VERSION = 2
CHUNK_BYTES = 1 << 20


def hook_names(n_layers: int) -> list[str]:
    """Residual-stream hook of each layer; index = layer number (0 = embeddings)."""
    return ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(n_layers)]


def layer_path(split_dir: str | Path, layer: int) -> Path:
    return Path(split_dir) / f"layer_{layer:02d}.h5"


class StoreMismatch(ValueError):
    """An activations file that does not belong with the inputs it is read with."""


@dataclass(frozen=True)
class LayerMeta:
    """What every layer file records about itself; readers compare it with their inputs."""

    model_name: str
    hook_name: str
    layer: int
    d_model: int
    dtype: str
    n_tokens: int
    prompts_sha256: str
    processing: str
    compute_dtype: str

    def attrs(self) -> dict[str, Any]:
        return {**self.__dict__, "format_version": FORMAT_VERSION}


class LayerWriter:
    """Create one layer file under a temporary name; ``commit`` renames it into place."""

    def __init__(self, path: Path, meta: LayerMeta) -> None:
        self.path = path
        self.tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
        self.tmp.unlink(missing_ok=True)
        self.file = h5py.File(self.tmp, "w", libver=("v110", "v110"))
        itemsize = np.dtype(meta.dtype).itemsize
        rows = max(1, min(meta.n_tokens, CHUNK_BYTES // (meta.d_model * itemsize)))
        self.data = self.file.create_dataset(
            meta.hook_name,
            shape=(meta.n_tokens, meta.d_model),
            dtype=meta.dtype,
            chunks=(rows, meta.d_model),
            track_times=False,
        )
        for key, value in meta.attrs().items():
            self.data.attrs[key] = value
        self.written = 0

    def write(self, start: int, block: np.ndarray) -> None:
        self.data[start : start + len(block)] = block
        self.written += len(block)

    def commit(self) -> None:
        if self.written != self.data.shape[0]:
            raise RuntimeError(f"{self.path}: wrote {self.written} of {self.data.shape[0]} rows")
        self.file.close()
        with open(self.tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self.file.id.valid:
            self.file.close()
        self.tmp.unlink(missing_ok=True)


def read_meta(path: str | Path) -> LayerMeta:
    with h5py.File(path, "r") as f:
        (name,) = _dataset_names(f, path)
        attrs = dict(f[name].attrs)
    if _plain(attrs.get("format_version", 1)) < 2:
        attrs.setdefault("compute_dtype", "float32")  # format 1 always ran the forward pass in float32
    fields = LayerMeta.__dataclass_fields__
    missing = sorted(set(fields) - set(attrs))
    if missing:
        raise StoreMismatch(f"{path}: not an activations file of this pipeline (no {', '.join(missing)})")
    return LayerMeta(**{k: _plain(attrs[k]) for k in fields})


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _dataset_names(f: h5py.File, path: str | Path) -> list[str]:
    names: list[str] = []
    f.visititems(lambda n, obj: names.append(n) if isinstance(obj, h5py.Dataset) else None)
    if len(names) != 1:
        raise StoreMismatch(f"{path}: expected one activations dataset, found {names}")
    return names


def check_meta(path: str | Path, prompts_sha256: str, n_tokens: int, model_name: str | None = None) -> LayerMeta:
    """Refuse a layer file that was computed from other prompts or another model."""
    meta = read_meta(path)
    if meta.prompts_sha256 != prompts_sha256:
        raise StoreMismatch(
            f"{path} was computed from prompts {meta.prompts_sha256[:12]}, not {prompts_sha256[:12]}: "
            "rerun `dvc repro activations`"
        )
    if meta.n_tokens != n_tokens:
        raise StoreMismatch(f"{path} has {meta.n_tokens} tokens but the prompts have {n_tokens}")
    if model_name is not None and meta.model_name != model_name:
        raise StoreMismatch(f"{path} comes from model {meta.model_name!r}, not {model_name!r}")
    return meta


def read_rows(path: str | Path, rows: np.ndarray, prompts_sha256: str, n_tokens: int) -> np.ndarray:
    """float32 activations of the given (sorted) token rows, read chunk by chunk.

    Memory is the selected rows plus one chunk, whatever the file size.
    """
    check_meta(path, prompts_sha256, n_tokens)
    rows = np.asarray(rows)
    if len(rows) and np.any(np.diff(rows) < 0):
        raise ValueError("rows must be sorted")
    with h5py.File(path, "r") as f:
        (name,) = _dataset_names(f, path)
        data = f[name]
        out = np.empty((len(rows), data.shape[1]), dtype=np.float32)
        step = data.chunks[0] * max(1, 16384 // data.chunks[0])
        done = 0
        for start in range(0, data.shape[0], step):
            hi = np.searchsorted(rows, start + step, side="left")
            if hi > done:
                block = data[start : start + step]
                out[done:hi] = block[rows[done:hi] - start]
                done = hi
        return out
