"""Params are validated up front: each bad value gives one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import TINY_PARAMS, run_stage, write_params
from emergent_pos.config import ParamError, load_params


def test_defaults_match_params_yaml() -> None:
    params = load_params(
        Path(__file__).parents[1] / "params.yaml",
        ["model", "toy", "dictionary", "prompts", "activations", "probe", "report"],
        need_seed=True,
    )
    assert params.model.name == "toy" and params.prompts.n_words == 7 and params.probe.token == "last"
    assert params.prompts.prefix.endswith("Philadelphia.\nWhen")


@pytest.mark.parametrize(
    ("section", "values", "key"),
    [
        ("prompts", {"n_words": 0}, "prompts.n_words"),
        ("prompts", {"n_words": "seven"}, "prompts.n_words"),
        ("prompts", {"colour": "red"}, "prompts.colour"),
        ("dictionary", {"train_fraction": 1.0}, "dictionary.train_fraction"),
        ("dictionary", {"train_fraction": 0}, "dictionary.train_fraction"),
        ("probe", {"token": "middle"}, "probe.token"),
        ("probe", {"C": -1}, "probe.C"),
        ("probe", {"tol": 0}, "probe.tol"),
        ("probe", {"tol": "tiny"}, "probe.tol"),
        ("activations", {"compute_dtype": "int8"}, "activations.compute_dtype"),
        ("probe", {"solver": "liblinear", "multi_class": "multinomial"}, "probe.solver"),
        ("model", {"init": "zeros"}, "model.init"),
        ("activations", {"dtype": "int8"}, "activations.dtype"),
        ("report", {"layers": []}, "report.layers"),
        ("report", {"layers": "some"}, "report.layers"),
        ("toy", {"n_heads": 3}, "toy.n_heads"),
        ("toy", {"n_layers": True}, "toy.n_layers"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, section: str, values: dict, key: str) -> None:
    write_params(tmp_path / "params.yaml", **{section: values})
    with pytest.raises(ParamError) as err:
        load_params(tmp_path / "params.yaml", [section], need_seed=True)
    assert err.value.key == key
    assert "\n" not in str(err.value) and key in str(err.value)


def test_unknown_section_and_bad_seed(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**TINY_PARAMS, "probes": {}}))
    with pytest.raises(ParamError, match="probes"):
        load_params(path, ["probe"])
    path.write_text(yaml.safe_dump({**TINY_PARAMS, "seed": -3}))
    with pytest.raises(ParamError, match="seed"):
        load_params(path, [], need_seed=True)


def test_stage_reports_bad_param_in_one_line_before_work(workdir: Path) -> None:
    write_params(workdir / "params.yaml", probe={"token": "middle"})
    proc = run_stage(workdir, "probes", check=False)  # no inputs exist: validation must come first
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "probe.token" in lines[0] and "'middle'" in lines[0]


def test_exponent_floats_written_by_dvc_are_read_as_floats(tmp_path: Path) -> None:
    """`dvc exp run -S probe.tol=1e-6` writes 1e-06, which PyYAML (YAML 1.1) reads as a string."""
    path = tmp_path / "params.yaml"
    write_params(path)
    path.write_text(path.read_text().replace("  C: 1.0", "  C: 1e+00\n  tol: 1e-06"))
    probe = load_params(path, ["probe"]).probe
    assert probe.tol == 1e-6 and probe.C == 1.0
