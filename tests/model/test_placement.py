"""Placement of the model at run time: parsing the knob, and a split that leaves results alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emergent_pos.activations.extract import write_activations
from emergent_pos.activations.store import hook_path, read_rows
from emergent_pos.config import ParamError
from emergent_pos.model.hooks import residual_hooks
from emergent_pos.model.load import describe_devices, load_bridge
from emergent_pos.model.placement import Placement, parse_placement, placement_from_env

HOOKS = residual_hooks(2)
META = {"model_name": "toy", "prompts_sha256": "abc", "processing": "raw"}


def test_the_knob_parses_to_boot_arguments(tmp_path: Path) -> None:
    assert parse_placement("auto", "cpu") == Placement(device="cpu")
    assert parse_placement("1") == Placement(device="cpu")  # one device: the best one here (no GPU)
    assert placement_from_env({}) == Placement(device="cpu")
    got = parse_placement('{"device_map": "balanced", "max_memory": {"0": "20GiB", "cpu": 1000}}')
    assert got.boot_kwargs() == {"device_map": "balanced", "max_memory": {0: "20GiB", "cpu": 1000}}
    assert got.split and "device_map=balanced" in str(got)
    assert parse_placement('{"max_memory": {"cpu": "1GiB"}}').device_map == "auto"
    spec = tmp_path / "map.json"
    spec.write_text('{"device_map": {"": "cpu"}, "offload_folder": "/tmp/off"}')
    assert parse_placement(f"@{spec}").boot_kwargs() == {"device_map": {"": "cpu"}, "offload_folder": "/tmp/off"}


@pytest.mark.parametrize(
    ("spec", "device", "needle"),
    [
        ("2", "auto", "needs 2 CUDA devices; 0 visible"),
        ("0", "auto", "at least 1"),
        ("everywhere", "auto", "a device count"),
        ("{nope", "auto", "not valid JSON"),
        ('{"device": "cpu"}', "auto", "unknown key 'device'"),
        ('{"device_map": 3}', "auto", "device_map is"),
        ('{"device_map": {"a": [0]}}', "auto", "maps module names"),
        ('{"max_memory": []}', "auto", "max_memory maps devices"),
        ('{"max_memory": {"0": [1]}}', "auto", "max_memory sizes are bytes"),
        ("@/no/such/file.json", "auto", "cannot read it"),
        ('{"device_map": "auto"}', "cpu", "EMERGENT_POS_DEVICE=cpu names one device"),
    ],
)
def test_bad_placements_are_one_line(spec: str, device: str, needle: str) -> None:
    with pytest.raises(ParamError, match="EMERGENT_POS_PLACEMENT") as err:
        parse_placement(spec, device)
    assert needle in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "spec",
    [
        '{"device_map": {"": "cpu"}}',  # every block on the CPU, by accelerate's map
        '{"device_map": "auto", "max_memory": {"cpu": "2GiB"}}',  # accelerate's own choice under a budget
    ],
)
def test_an_accelerate_map_stores_what_one_device_stores(tiny_model_dir: Path, tmp_path: Path, spec: str) -> None:
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 390, size=rng.integers(5, 30)) for _ in range(9)]
    placement = parse_placement(spec)
    for name, where in (("one", "cpu"), ("map", placement)):
        bridge = load_bridge(tiny_model_dir, where)
        shapes = [(32,)] * len(HOOKS)
        write_activations(
            bridge, seqs, tmp_path / name, META, HOOKS, shapes, dtype="float32", batch_tokens=64, pad_id=0
        )
    assert describe_devices(bridge) == "cpu (blocks 0-1)"
    for hook in HOOKS:
        assert hook_path(tmp_path / "map", hook).read_bytes() == hook_path(tmp_path / "one", hook).read_bytes()


def test_a_map_transformer_lens_refuses_is_one_line(tiny_model_dir: Path) -> None:
    """TransformerLens 4.3 refuses maps mixing a GPU with CPU offload; the message names the knob."""
    mixed = parse_placement('{"device_map": {"transformer.h.0": 0, "transformer.h.1": "cpu"}}')
    with pytest.raises(ParamError, match="EMERGENT_POS_PLACEMENT.*TransformerLens cannot place the model so") as err:
        load_bridge(tiny_model_dir, mixed)
    assert "\n" not in str(err.value)


@pytest.mark.gpu
def test_an_accelerate_map_on_the_gpu_stores_what_the_cpu_stores(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Every block on ``cuda:0`` through accelerate's dispatch (the path a multi-GPU split takes)."""
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 390, size=rng.integers(5, 30)) for _ in range(9)]
    shapes = [(32,)] * len(HOOKS)
    for name, where in (("cpu", "cpu"), ("map", parse_placement('{"device_map": {"": 0}}'))):
        bridge = load_bridge(tiny_model_dir, where)
        write_activations(
            bridge, seqs, tmp_path / name, META, HOOKS, shapes, dtype="float32", batch_tokens=64, pad_id=0
        )
    assert describe_devices(bridge) == "cuda:0 (blocks 0-1)"
    n = sum(map(len, seqs))
    for hook in HOOKS:
        got = read_rows(hook_path(tmp_path / "map", hook), np.arange(n), "abc", n)
        want = read_rows(hook_path(tmp_path / "cpu", hook), np.arange(n), "abc", n)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
