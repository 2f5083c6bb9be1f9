"""The hook-keyed HDF5 store: any shape, provenance checks, old layouts refused in one line."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from emergent_pos.activations.store import (
    HookMeta,
    HookWriter,
    StoreMismatch,
    check_meta,
    hook_path,
    read_meta,
    read_rows,
    stored_hooks,
)


def _write(root: Path, hook: str, x: np.ndarray, sha: str = "abc") -> Path:
    meta = HookMeta("toy", hook, tuple(x.shape[1:]), "float32", len(x), sha, "raw", "float32")
    writer = HookWriter(hook_path(root, hook), meta)
    writer.write(0, x[: len(x) // 2])
    writer.write(len(x) // 2, x[len(x) // 2 :])
    writer.commit()
    return hook_path(root, hook)


def test_round_trip_of_any_shape_with_provenance(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(50, 3, 4)).astype(np.float32)
    path = _write(tmp_path, "blocks.1.attn.hook_z", x)
    assert path.name == "blocks.1.attn.hook_z.h5"
    meta = read_meta(path)
    assert meta.shape == (3, 4) and meta.n_tokens == 50 and meta.hook_name == "blocks.1.attn.hook_z"
    rows = np.array([0, 7, 8, 49])
    np.testing.assert_array_equal(read_rows(path, rows, "abc", 50), x[rows])
    with h5py.File(path, "r") as f:
        assert list(f) == ["blocks.1.attn.hook_z", "token_rows"] and f["blocks.1.attn.hook_z"].shape == (50, 3, 4)
    assert stored_hooks(tmp_path) == ["blocks.1.attn.hook_z"]


def test_reader_refuses_mismatched_inputs(tmp_path: Path) -> None:
    path = _write(tmp_path, "blocks.0.hook_resid_post", np.zeros((10, 4), dtype=np.float32))
    with pytest.raises(StoreMismatch, match="prompts"):
        read_rows(path, np.arange(3), "other-hash", 10)
    with pytest.raises(StoreMismatch, match="tokens"):
        check_meta(path, "abc", 11)
    with pytest.raises(StoreMismatch, match="model"):
        check_meta(path, "abc", 10, model_name="gpt2")
    with pytest.raises(ValueError, match="sorted"):
        read_rows(path, np.array([3, 1]), "abc", 10)


def test_missing_hook_and_old_layout_say_what_to_run(tmp_path: Path) -> None:
    _write(tmp_path, "blocks.0.hook_resid_post", np.zeros((10, 4), dtype=np.float32))
    with pytest.raises(StoreMismatch, match=r"stored hooks: blocks.0.hook_resid_post.*activations.extra_hooks"):
        read_meta(hook_path(tmp_path, "blocks.0.attn.hook_z"))
    old = tmp_path / "old"
    old.mkdir()
    (old / "layer_00.h5").write_bytes(b"")
    with pytest.raises(StoreMismatch, match=r"old layer_NN.h5 layout: rerun `dvc repro activations`"):
        read_meta(hook_path(old, "blocks.0.hook_resid_pre"))


def test_an_aborted_writer_leaves_nothing(tmp_path: Path) -> None:
    meta = HookMeta("toy", "h", (4,), "float32", 10, "abc", "raw", "float32")
    writer = HookWriter(hook_path(tmp_path, "h"), meta)
    writer.write(0, np.zeros((5, 4), dtype=np.float32))
    with pytest.raises(RuntimeError, match="wrote 5 of 10 rows"):
        writer.commit()
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_flipped_bytes_fail_the_read_naming_the_file(tmp_path: Path) -> None:
    """Fletcher-32 on every chunk: a same-size corruption is caught, not read as data."""
    x = np.random.default_rng(0).normal(size=(4000, 64)).astype(np.float32)
    path = _write(tmp_path, "blocks.0.hook_resid_post", x)
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 16] = bytes(b ^ 0xFF for b in raw[middle : middle + 16])
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreMismatch, match=f"{path}.*corrupt or truncated.*dvc checkout"):
        read_rows(path, np.arange(4000), "abc", 4000)
