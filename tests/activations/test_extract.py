"""Cached activations: equal to an independent Hugging Face forward pass, safe to interrupt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from emergent_pos.activations.extract import DiskFull, check_disk, hook_shapes, plan_batches, write_activations
from emergent_pos.activations.store import (
    StoreMismatch,
    check_meta,
    hook_path,
    read_meta,
    read_rows,
    stored_hooks,
    stored_rows,
)
from emergent_pos.errors import UserError
from emergent_pos.model.hooks import residual_hooks
from emergent_pos.model.load import load_bridge
from helpers import ENV, REPO, one_line_error


def _prompts(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 390, size=rng.integers(5, 30)) for _ in range(n)]


META = {"model_name": "toy", "prompts_sha256": "abc", "processing": "raw"}
HOOKS = residual_hooks(2)
SHAPES = [(32,)] * 3


def _write(bridge, seqs: list[np.ndarray], out: Path, **kwargs) -> None:  # noqa: ANN001
    """The residual streams of the tiny model, with the test's defaults."""
    write_activations(bridge, seqs, out, kwargs.pop("meta", META), HOOKS, SHAPES, pad_id=0, **kwargs)


def test_matches_hugging_face_hidden_states(tiny_model_dir: Path, tmp_path: Path) -> None:
    seqs = _prompts(23)
    bridge = load_bridge(tiny_model_dir, "cpu", "raw")
    # a small budget forces many ragged, right-padded batches
    _write(bridge, seqs, tmp_path, dtype="float32", batch_tokens=100)
    hf = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager").eval()
    n_layers = hf.config.n_layer
    files = [hook_path(tmp_path, hook) for hook in HOOKS]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.name for f in files)  # no temporary leftovers
    row = 0
    with torch.no_grad():
        for seq in seqs:
            hs = hf(torch.tensor(seq)[None], output_hidden_states=True).hidden_states
            for layer, path in enumerate(files):
                got = read_rows(path, np.arange(row, row + len(seq)), "abc", sum(map(len, seqs)))
                want = hs[layer][0]
                if layer == n_layers:  # HF applies the final LayerNorm to its last hidden state
                    got = hf.transformer.ln_f(torch.from_numpy(got)).numpy()
                np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=0)
            row += len(seq)
    meta = read_meta(files[1])
    assert meta.hook_name == "blocks.0.hook_resid_post" and meta.shape == (32,)
    assert [read_meta(f).hook_name for f in files] == HOOKS
    assert stored_hooks(tmp_path) == sorted(HOOKS)


def test_any_hook_of_shape_batch_pos_is_stored_per_token(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Per-head outputs keep their head axis; they equal the bridge's own cache."""
    seqs = _prompts(5)
    bridge = load_bridge(tiny_model_dir, "cpu", "raw")
    hooks = ["blocks.1.attn.hook_z", "blocks.0.hook_mlp_out", "blocks.0.hook_resid_post"]
    shapes = hook_shapes(bridge, hooks)
    assert shapes == [(2, 16), (32,), (32,)]
    write_activations(bridge, seqs, tmp_path, META, hooks, shapes, dtype="float32", batch_tokens=64, pad_id=0)
    n = sum(map(len, seqs))
    z = read_rows(hook_path(tmp_path, hooks[0]), np.arange(n), "abc", n)
    assert z.shape == (n, 2, 16)
    with torch.no_grad():
        _, cache = bridge.run_with_cache(torch.tensor(seqs[0])[None], names_filter=hooks)
    np.testing.assert_allclose(z[: len(seqs[0])], cache[hooks[0]][0].numpy(), atol=1e-5, rtol=0)


def test_unknown_or_unstorable_hooks_fail_in_one_line(tiny_model_dir: Path) -> None:
    bridge = load_bridge(tiny_model_dir, "cpu", "raw")
    with pytest.raises(UserError, match="'blocks.0.hook_nope' is not a hook of this model"):
        hook_shapes(bridge, ["blocks.0.hook_nope"])
    with pytest.raises(UserError, match="cannot be stored per token"):
        hook_shapes(bridge, ["blocks.0.attn.hook_pattern"])


def test_deterministic_bytes_and_float16(tiny_model_dir: Path, tmp_path: Path) -> None:
    seqs = _prompts(10)
    bridge = load_bridge(tiny_model_dir, "cpu", "raw")
    for name in ("a", "b"):
        _write(bridge, seqs, tmp_path / name, dtype="float16", batch_tokens=64)
    for hook in HOOKS:
        assert hook_path(tmp_path / "a", hook).read_bytes() == hook_path(tmp_path / "b", hook).read_bytes()
    with h5py.File(hook_path(tmp_path / "a", HOOKS[2]), "r") as f:
        assert f["blocks.1.hook_resid_post"].dtype == np.float16


def test_compat_mode_differs_from_raw_but_runs(tiny_model_dir: Path, tmp_path: Path) -> None:
    seqs = _prompts(4)
    n = sum(map(len, seqs))
    for mode in ("raw", "compat"):
        bridge = load_bridge(tiny_model_dir, "cpu", mode)
        _write(bridge, seqs, tmp_path / mode, meta={**META, "processing": mode}, dtype="float32", batch_tokens=256)
    raw = read_rows(hook_path(tmp_path / "raw", HOOKS[2]), np.arange(n), "abc", n)
    compat = read_rows(hook_path(tmp_path / "compat", HOOKS[2]), np.arange(n), "abc", n)
    assert raw.shape == compat.shape and not np.allclose(raw, compat)
    # centring writing weights removes the mean over d_model
    assert np.abs(compat.mean(axis=1)).max() < 1e-4 < np.abs(raw.mean(axis=1)).max()


def test_plan_batches_respects_budget_and_order() -> None:
    seqs = _prompts(50)
    batches = list(plan_batches(seqs, 120, pad_id=0))
    assert sum(len(b.tokens) for b in batches) == 50
    assert all(b.tokens.numel() <= 120 or len(b.tokens) == 1 for b in batches)
    rows = [b.row for b in batches]
    assert rows == sorted(rows) and rows[0] == 0
    assert sum(b.n_rows for b in batches) == sum(b.n_tokens for b in batches) == sum(map(len, seqs))


def test_a_token_subset_stores_exactly_those_rows(tiny_model_dir: Path, tmp_path: Path) -> None:
    """``rows``: the files hold those table rows, equal to the full run's, and refuse others."""
    seqs = _prompts(12)
    n = sum(map(len, seqs))
    bridge = load_bridge(tiny_model_dir, "cpu", "raw")
    _write(bridge, seqs, tmp_path / "all", dtype="float32", batch_tokens=100)
    keep = np.sort(np.random.default_rng(1).choice(n, size=n // 3, replace=False))
    meta = {**META, "tokens": "words"}
    _write(bridge, seqs, tmp_path / "some", meta=meta, dtype="float32", batch_tokens=100, rows=keep)
    for hook in HOOKS:
        path = hook_path(tmp_path / "some", hook)
        assert stored_rows(path).tolist() == keep.tolist()
        got = read_meta(path)
        assert (got.tokens, got.n_rows, got.n_tokens) == ("words", len(keep), n)
        want = read_rows(hook_path(tmp_path / "all", hook), keep[::2], "abc", n)
        np.testing.assert_array_equal(read_rows(path, keep[::2], "abc", n), want)
        with h5py.File(path, "r") as f:
            assert f[hook].shape == (len(keep), 32)
    unstored = np.setdiff1d(np.arange(n), keep)[:5]
    with pytest.raises(StoreMismatch, match=rf"holds words tokens \({len(keep)} of {n}\) and lacks 5 of the 5 rows"):
        read_rows(hook_path(tmp_path / "some", HOOKS[0]), unstored, "abc", n)
    with pytest.raises(StoreMismatch, match="activations.tokens: all"):
        check_meta(hook_path(tmp_path / "some", HOOKS[0]), "abc", n, rows=np.array([keep[0], unstored[0]]))


KILL_SCRIPT = """
import signal, sys, numpy as np
# a runner started in the background (nohup ... &) passes SIGINT on as ignored: restore Ctrl-C
signal.signal(signal.SIGINT, signal.default_int_handler)
from pathlib import Path
from emergent_pos.activations.extract import write_activations
from emergent_pos.model.hooks import residual_hooks
from emergent_pos.model.load import load_bridge
rng = np.random.default_rng(0)
seqs = [rng.integers(1, 390, size=30) for _ in range(10000)]
print("start", flush=True)
write_activations(load_bridge(sys.argv[1], "cpu"), seqs, Path(sys.argv[2]),
                  {"model_name": "toy", "prompts_sha256": "abc", "processing": "raw"},
                  residual_hooks(2), [(32,)] * 3, dtype="float32", batch_tokens=64, pad_id=0)
"""


@pytest.mark.parametrize(("sig", "delay"), [(signal.SIGKILL, 0.2), (signal.SIGTERM, 0.5), (signal.SIGINT, 1.0)])
def test_killed_mid_write_leaves_no_complete_file(tiny_model_dir: Path, tmp_path: Path, sig: int, delay: float) -> None:
    out = tmp_path / "acts"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(tiny_model_dir), str(out)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "start"
    deadline = time.monotonic() + 120
    while not (out / ".tmp-blocks.0.hook_resid_pre.h5").exists():  # signal mid-write, not while the model loads
        assert proc.poll() is None and time.monotonic() < deadline, "the writer never started"
        time.sleep(0.05)
    time.sleep(delay)
    assert proc.poll() is None, "finished before it could be interrupted: make the job bigger"
    os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert not list(out.glob("blocks.*.h5")), "an interrupted run left a file under its final name"


def test_peak_memory_does_not_grow_with_prompts(tmp_path: Path) -> None:
    """The real writer at two sizes 10x apart, each in a fresh process (benchmarks/memory.py)."""
    out = tmp_path / "memory.json"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks/memory.py"), "--prompts", "300", "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    acts = json.loads(out.read_text())["activations"]
    small, large = acts["small"], acts["large"]
    growth = large["peak_rss_mb"] - small["peak_rss_mb"]
    data_growth = large["data_mb"] - small["data_mb"]  # ~430 MB: holding it would show
    assert growth < 0.25 * data_growth, acts


@pytest.mark.parametrize("compute_dtype", ["bfloat16", "float16"])
def test_autocast_forward_is_close_to_float32_and_recorded(
    tiny_model_dir: Path, tmp_path: Path, compute_dtype: str
) -> None:
    seqs = _prompts(6)
    n = sum(map(len, seqs))
    bridge = load_bridge(tiny_model_dir, "cpu", "raw")
    for name, cd in (("full", "float32"), ("half", compute_dtype)):
        _write(bridge, seqs, tmp_path / name, dtype="float32", batch_tokens=64, compute_dtype=cd)
    assert read_meta(hook_path(tmp_path / "full", HOOKS[2])).compute_dtype == "float32"
    assert read_meta(hook_path(tmp_path / "half", HOOKS[2])).compute_dtype == compute_dtype
    for layer, hook in enumerate(HOOKS):
        full = read_rows(hook_path(tmp_path / "full", hook), np.arange(n), "abc", n)
        half = read_rows(hook_path(tmp_path / "half", hook), np.arange(n), "abc", n)
        err = np.abs(half - full).max() / np.abs(full).max()
        assert err < 0.05, (layer, err)
        if layer > 0:  # the embeddings are looked up, not multiplied: only later streams differ
            assert not np.array_equal(half, full)


@pytest.mark.gpu
def test_cuda_path_matches_cpu(tiny_model_dir: Path, tmp_path: Path) -> None:
    seqs = _prompts(40)
    n = sum(map(len, seqs))
    for device in ("cpu", "cuda"):
        bridge = load_bridge(tiny_model_dir, device)
        _write(bridge, seqs, tmp_path / device, dtype="float32", batch_tokens=200)
    for hook in HOOKS:
        cpu = read_rows(hook_path(tmp_path / "cpu", hook), np.arange(n), "abc", n)
        gpu = read_rows(hook_path(tmp_path / "cuda", hook), np.arange(n), "abc", n)
        np.testing.assert_allclose(gpu, cpu, atol=1e-4, rtol=0)


def test_disk_space_is_checked_before_writing(tmp_path: Path) -> None:
    with pytest.raises(DiskFull, match="GiB"):
        check_disk(tmp_path, 10**18)
    check_disk(tmp_path, 1000)


DISK_SCRIPT = """
import sys
from pathlib import Path
import numpy as np
from emergent_pos.activations.extract import write_activations
from emergent_pos.model.hooks import residual_hooks
from emergent_pos.io.cli import run
from emergent_pos.model.load import load_bridge

model_dir, out, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
del sys.argv[1:]  # run() is a stage's entry point: stages take no arguments
if mode == "unguarded":  # the free-space guard off: HDF5 itself meets the full disk, mid-write or on close
    import emergent_pos.activations.extract as extract
    extract.DISK_HEADROOM = -10**12
if mode == "simulate":  # no tmpfs could be mounted here: the writer fails as HDF5 does on a full disk
    import errno
    from emergent_pos.activations.store import HookWriter
    real = HookWriter.write
    def write(self, start, block):
        if start > 2000:
            raise OSError(errno.ENOSPC, "Can't write data (file write failed: No space left on device)")
        real(self, start, block)
    HookWriter.write = write
seqs = [np.random.default_rng(i).integers(1, 390, size=30) for i in range(400)]
meta = {"model_name": "toy", "prompts_sha256": "abc", "processing": "raw"}
run(lambda: write_activations(load_bridge(model_dir, "cpu"), seqs, out, meta, residual_hooks(2), [(32,)] * 3,
                              dtype="float32", batch_tokens=256, pad_id=0))
"""


@pytest.mark.parametrize("guard", ["guarded", "unguarded"])
def test_a_full_disk_ends_in_one_line_with_no_debris(tiny_model_dir: Path, tmp_path: Path, guard: str) -> None:
    """12,000 tokens x 3 hooks x 128 bytes = 4.4 MiB into a 3 MiB tmpfs (a simulated ENOSPC
    where no tmpfs can be mounted): with the free-space guard the writer stops before the
    disk is full; without it HDF5 fails, and the stage must still end cleanly (exit 2, not
    the segfault HDF5 causes at exit after a failed close)."""
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    try:
        out = mount / "acts"
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                DISK_SCRIPT,
                str(tiny_model_dir),
                str(out),
                guard if mounted.returncode == 0 else "simulate",
            ],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=300,
        )
        line = one_line_error(proc, "no space left on device while writing", "free at least")
        assert str(out) in line
        assert list(out.iterdir()) == []  # every writer aborted, every temporary file gone
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", str(mount)], check=True)
