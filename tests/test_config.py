"""Params are validated up front: each bad value gives one line naming the key."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import yaml

from emergent_pos.config import ParamError, key, read_params, section, seed
from emergent_pos.dataset.config import DictionaryConfig
from helpers import REPO, TINY_PARAMS, run_stage, write_params

# the check stage's registry of sections: each phase's config dataclass
SECTIONS = runpy.run_path(str(REPO / "stages/check.py"))["SECTIONS"]


def load(path: Path, name: str) -> object:
    return section(read_params(path), name, SECTIONS[name])


def test_params_yaml_lists_every_key_at_its_default() -> None:
    """`dvc exp run -S` can set only keys that params.yaml has; each one is there, at the default."""
    raw = read_params(REPO / "params.yaml")
    assert set(raw) == {"seed", *SECTIONS}
    for name, cls in SECTIONS.items():
        assert set(raw[name]) == set(cls.__dataclass_fields__), name
        # the default run also scores two held-out prefixes (the dataclass default holds none)
        chosen = {"eval_prefixes": ["Hello.\nWhen", "The quick brown fox jumps over the lazy dog.\nWhen"]}
        assert section(raw, name, cls) == cls(**(chosen if name == "prompts" else {})), name
    assert section(raw, "prompts", SECTIONS["prompts"]).prefix.endswith("Philadelphia.\nWhen")


@pytest.mark.parametrize(
    ("section", "values", "key"),
    [
        ("prompts", {"n_units": 0}, "prompts.n_units"),
        ("prompts", {"n_units": "seven"}, "prompts.n_units"),
        ("prompts", {"scheme": "word_in_paragraph"}, "prompts.scheme"),
        ("prompts", {"unit_words": [3, 1]}, "prompts.unit_words"),
        ("prompts", {"n_train": 1, "train_prefixes": ["Hello.\nWhen"]}, "prompts.n_train"),
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
        ("probe", {"seed": 2**32}, "probe.seed"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, section: str, values: dict, key: str) -> None:
    write_params(tmp_path / "params.yaml", **{section: values})
    with pytest.raises(ParamError) as err:
        load(tmp_path / "params.yaml", section)
    assert err.value.key == key
    assert "\n" not in str(err.value) and key in str(err.value)


def test_unknown_section_is_refused_against_dvc_yaml_and_bad_seed(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**TINY_PARAMS, "probes": {}}))
    read_params(path)  # no dvc.yaml beside it: nothing declares the sections
    (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    with pytest.raises(ParamError, match="probes.*unknown section; allowed: activations, attribution, dictionary"):
        read_params(path)
    for bad in (-3, 99999999999999999999):
        path.write_text(yaml.safe_dump({**TINY_PARAMS, "seed": bad}))
        with pytest.raises(ParamError, match=r"seed.*must be in 0\.\.4294967295"):
            seed(read_params(path))


def test_one_key_is_validated_alone(tmp_path: Path) -> None:
    """A stage that declares only `dictionary.max_tokens` is not failed by another dictionary key."""
    path = tmp_path / "params.yaml"
    write_params(path, dictionary={"max_tokens": 4, "n_words": -5})
    assert key(read_params(path), "dictionary.max_tokens", DictionaryConfig) == 4
    write_params(path, dictionary={"max_tokens": 0})
    with pytest.raises(ParamError, match="dictionary.max_tokens"):
        key(read_params(path), "dictionary.max_tokens", DictionaryConfig)


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
    probe = load(path, "probe")
    assert probe.tol == 1e-6 and probe.C == 1.0


def test_every_line_of_the_sweep_example_is_valid() -> None:
    """sweeps/example.txt (what the SLURM array runs) holds only keys and values `check` accepts."""
    import runpy
    import shlex

    import yaml

    from emergent_pos.config import section
    from helpers import REPO

    sections = runpy.run_path(str(REPO / "stages/check.py"), run_name="check")["SECTIONS"]
    lines = [x for x in (REPO / "sweeps/example.txt").read_text().splitlines() if x.strip() and x[0] != "#"]
    assert lines
    for line in lines:
        raw = yaml.safe_load((REPO / "params.yaml").read_text())
        for word in shlex.split(line):
            if "=" in word:
                dotted, value = word.split("=", 1)
                *path, last = dotted.split(".")
                node = raw
                for part in path:
                    node = node[part]
                assert last in node, f"{line}: {dotted} is not a params.yaml key"
                node[last] = yaml.safe_load(value)
        for name, cls in sections.items():
            section(raw, name, cls)
