"""HDF5 store of cached activations: one file per split and TransformerLens hook.

``data/activations/{split}/{hook}.h5`` (``val/blocks.0.hook_resid_post.h5``) holds one
dataset named after the hook, shaped ``[n_rows, *shape]`` (``[n, d_model]`` for a
residual stream, ``[n, n_heads, d_head]`` for ``hook_z``), and ``token_rows``: the
prompts-table row of each stored row, ascending. Every token is stored
(``activations.tokens: all``) or only a subset (``units``, ``bounds``, ``ends``); readers ask for
table rows and are refused, in one line, a row the file does not hold. One file per hook
lets ``dvc pull`` fetch a single hook and lets a changed hook re-upload alone. Files are
written fresh under a temporary name (never opened for update: DVC may hard-link cached
files), without timestamps, so identical inputs give identical bytes. Every file records
where it came from; readers refuse a mismatch. Chunks carry Fletcher-32 checksums, so a
flipped byte fails the read in one line naming the file instead of silently changing a
result.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from emergent_pos.errors import UserError
from emergent_pos.io.files import TMP_PREFIX

FORMAT_VERSION = 4  # 1-2: layer_NN.h5 files, residual streams only, no checksums; 3: every token, no token_rows
ROWS = "token_rows"
ACTIVATIONS_DIR = Path("data/activations")
CHUNK_BYTES = 1 << 20


class StoreMismatch(UserError, ValueError):
    """An activations file that is missing, unreadable or does not belong with its inputs."""


def _unreadable(path: Path, err: Exception) -> StoreMismatch:
    reason = str(err).split("(")[0].strip() or type(err).__name__
    return StoreMismatch(
        f"{path} is unreadable ({reason}; corrupt or truncated): "
        "restore it with `dvc checkout data/activations` or recompute it with `dvc repro -f -s activations`"
    )


def hook_path(split_dir: str | Path, hook: str) -> Path:
    return Path(split_dir) / f"{hook}.h5"


def stored_hooks(split_dir: str | Path) -> list[str]:
    """Hooks with a complete file in a split's directory (temporary files are not listed)."""
    d = Path(split_dir)
    if not d.is_dir():
        return []
    return sorted(p.name[: -len(".h5")] for p in d.glob("*.h5") if not p.name.startswith(TMP_PREFIX))


@dataclass(frozen=True)
class HookMeta:
    """What every hook file records about itself; readers compare it with their inputs."""

    model_name: str
    hook_name: str
    shape: tuple[int, ...]  # of one row (one token)
    dtype: str
    n_tokens: int  # of the prompts table
    prompts_sha256: str
    processing: str
    compute_dtype: str
    tokens: str = "all"  # which tokens are stored (activations.tokens): all, units, bounds or ends
    n_rows: int | None = None  # how many (None: n_tokens, every one)

    def __post_init__(self) -> None:
        if self.n_rows is None:
            object.__setattr__(self, "n_rows", self.n_tokens)

    def attrs(self) -> dict[str, Any]:
        return {**asdict(self), "shape": np.asarray(self.shape, dtype=np.int64), "format_version": FORMAT_VERSION}


class HookWriter:
    """Create one hook file under a temporary name; ``commit`` renames it into place.

    ``rows``: the prompts-table row of each row to be written (``meta.n_rows`` of them;
    default every row).
    """

    def __init__(self, path: Path, meta: HookMeta, rows: np.ndarray | None = None) -> None:
        rows = np.arange(meta.n_tokens) if rows is None else rows
        if len(rows) != meta.n_rows or (len(rows) and np.any(np.diff(rows) <= 0)):
            raise ValueError(f"{path}: token rows must be {meta.n_rows} ascending table rows")
        self.path = path
        self.tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
        self.tmp.unlink(missing_ok=True)
        self.file = h5py.File(self.tmp, "w", libver=("v110", "v110"))
        row_bytes = int(np.prod(meta.shape)) * np.dtype(meta.dtype).itemsize
        chunk = max(1, min(meta.n_rows, CHUNK_BYTES // max(1, row_bytes)))
        self.data = self.file.create_dataset(
            meta.hook_name,
            shape=(meta.n_rows, *meta.shape),
            dtype=meta.dtype,
            chunks=(chunk, *meta.shape),
            fletcher32=True,
            track_times=False,
        )
        self.file.create_dataset(
            ROWS, data=np.asarray(rows, dtype=np.int64), chunks=True, fletcher32=True, track_times=False
        )
        for key, value in meta.attrs().items():
            self.data.attrs[key] = value
        self.written = 0
        self.broken = False  # HDF5 failed to close the file: the process must not exit normally

    def write(self, start: int, block: np.ndarray) -> None:
        self.data[start : start + len(block)] = block
        self.written += len(block)

    def close(self) -> None:
        """Flush and close the temporary file (the step a full disk can still fail)."""
        if self.written != self.data.shape[0]:
            raise RuntimeError(f"{self.path}: wrote {self.written} of {self.data.shape[0]} rows")
        try:
            self.file.close()
        except Exception:
            self._broken()
            raise
        with open(self.tmp, "rb") as fh:
            os.fsync(fh.fileno())

    def publish(self) -> None:
        """Rename the closed temporary file into place."""
        os.replace(self.tmp, self.path)

    def commit(self) -> None:
        self.close()
        self.publish()

    def abort(self) -> bool:
        """Remove the temporary file whatever state it is in; False if HDF5 could not close it.

        After a failed write (a full disk) HDF5's close can fail too; the file is unlinked
        all the same, and the caller learns that the library holds a broken file.
        """
        if self.file.id.valid:
            try:
                self.file.close()
            except Exception:  # the file is being thrown away: nothing in it matters
                self._broken()
        self.tmp.unlink(missing_ok=True)
        return not self.broken

    def _broken(self) -> None:
        self.broken = True
        # h5py reports the same flush failure again (as a traceback) whenever one of the
        # file's handles is freed, until the process ends, which it now must
        sys.unraisablehook = lambda _: None


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _open(path: Path) -> h5py.File:
    if not path.exists():
        legacy = sorted(path.parent.glob("layer_*.h5"))
        if legacy:
            raise StoreMismatch(
                f"{path.parent} holds activations in the old layer_NN.h5 layout: rerun `dvc repro activations`"
            )
        hooks = stored_hooks(path.parent)
        raise StoreMismatch(
            f"{path} is missing (stored hooks: {', '.join(hooks) or 'none'}): "
            "add it to activations.extra_hooks and run `dvc repro activations`"
        )
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise _unreadable(path, err) from err


def _dataset(f: h5py.File, path: Path) -> h5py.Dataset:
    names: list[str] = []
    f.visititems(lambda n, obj: names.append(n) if isinstance(obj, h5py.Dataset) and n != ROWS else None)
    if len(names) != 1:
        raise StoreMismatch(f"{path}: expected one activations dataset, found {names}")
    return f[names[0]]


def _token_rows(f: h5py.File, path: Path) -> np.ndarray:
    try:
        return f[ROWS][:]
    except KeyError as err:
        raise StoreMismatch(f"{path}: no {ROWS} dataset; rerun `dvc repro activations`") from err
    except OSError as err:
        raise _unreadable(path, err) from err


def read_meta(path: str | Path) -> HookMeta:
    path = Path(path)
    with _open(path) as f:
        attrs = dict(_dataset(f, path).attrs)
    version = int(attrs.get("format_version", 0))
    if 0 < version < FORMAT_VERSION:
        raise StoreMismatch(
            f"{path} was written in an older layout (format {version}, now {FORMAT_VERSION}): "
            "rerun `dvc repro activations`"
        )
    fields = HookMeta.__dataclass_fields__
    missing = sorted(set(fields) - set(attrs))
    if missing:
        raise StoreMismatch(f"{path}: not an activations file of this pipeline (no {', '.join(missing)})")
    values = {k: _plain(attrs[k]) for k in fields}
    values["shape"] = tuple(int(s) for s in np.atleast_1d(attrs["shape"]))
    return HookMeta(**values)


def check_meta(
    path: str | Path, prompts_sha256: str, n_tokens: int, model_name: str | None = None, rows: np.ndarray | None = None
) -> HookMeta:
    """Refuse a hook file that was computed from other prompts or another model, or that
    lacks any of the prompts-table ``rows`` (sorted) a reader will ask for."""
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
    if rows is not None:
        locate(stored_rows(path), np.asarray(rows), Path(path), meta)
    return meta


def locate(held: np.ndarray, rows: np.ndarray, path: Path, meta: HookMeta) -> np.ndarray:
    """Positions in the file of the prompts-table ``rows``; one line if any is not held."""
    at = np.searchsorted(held, rows)
    found = at < len(held)
    found[found] = held[at[found]] == rows[found]
    if not found.all():
        raise StoreMismatch(
            f"{path} holds {meta.tokens} tokens ({meta.n_rows} of {meta.n_tokens}) and lacks "
            f"{int((~found).sum())} of the {len(rows)} rows read here: set activations.tokens: all "
            "(or one that holds them) and rerun `dvc repro activations`"
        )
    return at


def stored_rows(path: str | Path) -> np.ndarray:
    """The prompts-table rows a hook file holds, ascending."""
    path = Path(path)
    with _open(path) as f:
        return _token_rows(f, path)


def read_rows(path: str | Path, rows: np.ndarray, prompts_sha256: str, n_tokens: int) -> np.ndarray:
    """float32 activations ``[len(rows), *shape]`` of the given (sorted) prompts-table rows.

    Read chunk by chunk: memory is the selected rows plus one read block, whatever the
    file size. A row the file does not store (``activations.tokens`` left it out) is
    refused in one line.
    """
    path = Path(path)
    meta = check_meta(path, prompts_sha256, n_tokens)
    rows = np.asarray(rows)
    if len(rows) and np.any(np.diff(rows) < 0):
        raise ValueError("rows must be sorted")
    with _open(path) as f:
        data = _dataset(f, path)
        rows = locate(_token_rows(f, path), rows, path, meta)  # positions in the file
        out = np.empty((len(rows), *data.shape[1:]), dtype=np.float32)
        step = data.chunks[0] * max(1, 16384 // data.chunks[0])
        done = 0
        for start in range(0, data.shape[0], step):
            hi = np.searchsorted(rows, start + step, side="left")
            if hi > done:
                try:
                    block = data[start : start + step]
                except OSError as err:  # a chunk's checksum does not match its bytes
                    raise _unreadable(path, err) from err
                out[done:hi] = block[rows[done:hi] - start]
                done = hi
        return out
