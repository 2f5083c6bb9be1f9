"""dvc.yaml's deps match the imports, and edits outside the model leave the model alone."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml

from helpers import REPO, dvc, write_params

SRC = REPO / "src"
PACKAGE = "emergent_pos"


def _module_file(module: str) -> Path | None:
    path = SRC.joinpath(*module.split("."))
    if (path / "__init__.py").exists():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").exists() else None


def _imports(path: Path) -> set[str]:
    """Package modules a file imports, at any depth of its body (lazy imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)  # `from pkg import module`
    return {n for n in names if n.split(".")[0] == PACKAGE}


def import_closure(script: Path) -> set[Path]:
    """Every package file that running ``script`` imports, parent packages' __init__ included."""
    files: set[Path] = set()
    todo = [script]
    while todo:
        for module in _imports(todo.pop()):
            parts = module.split(".")
            for i in range(1, len(parts) + 1):
                path = _module_file(".".join(parts[:i]))
                if path is not None and path not in files:
                    files.add(path)
                    todo.append(path)
    return files


def _stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", sorted(_stages()))
def test_deps_cover_the_import_closure_and_nothing_stale(name: str) -> None:
    stage = _stages()[name]
    script = REPO / stage["cmd"].split()[-1]
    deps = [REPO / d for d in stage["deps"]]
    assert script in deps, f"{name}: its script {script.relative_to(REPO)} is not a dep"
    closure = import_closure(script)
    uncovered = sorted(str(f.relative_to(REPO)) for f in closure if not any(f == d or d in f.parents for d in deps))
    assert not uncovered, f"stage {name} imports modules its deps miss: {uncovered}"
    for dep in deps:
        if SRC in dep.parents:  # a code dep must be imported: a stale one reruns the stage for nothing
            used = dep in closure if dep.suffix == ".py" else any(dep in f.parents for f in closure)
            assert used, f"stage {name} depends on {dep.relative_to(REPO)} but never imports it"


def test_the_closure_sees_lazy_and_package_imports(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("def f():\n    from emergent_pos.probes import runner\n")
    closure = {str(p.relative_to(SRC)) for p in import_closure(script)}
    assert {"emergent_pos/__init__.py", "emergent_pos/probes/__init__.py", "emergent_pos/probes/runner.py"} <= closure
    assert "emergent_pos/activations/store.py" in closure  # runner's own imports, transitively


# What the model stage may import from outside model/: the generic plumbing and the word
# source its training corpus is built from. Nothing else may invalidate the model.
MODEL_SHARED = {"__init__.py", "config.py", "errors.py", "io", "dataset/__init__.py", "dataset/words.py"}


def test_the_model_stage_needs_only_model_code_and_shared_plumbing() -> None:
    prefix = f"src/{PACKAGE}/"
    code = {d.removeprefix(prefix) for d in _stages()["model"]["deps"] if d.startswith(prefix)}
    assert code - {"model"} == MODEL_SHARED


@pytest.mark.slow
def test_edits_outside_the_model_leave_the_model_stage_alone(project_copy: Path) -> None:
    root = project_copy
    package = root / "src" / PACKAGE
    shared = [package / p for p in MODEL_SHARED]
    edited = [
        p for p in package.rglob("*.py") if not any(p == s or s in p.parents for s in [*shared, package / "model"])
    ]
    edited += [root / "stages" / f"{s}.py" for s in ("dictionary", "prompts", "activations", "probes", "report")]
    assert len(edited) > 15
    for path in edited:
        path.write_text(path.read_text() + "\n# an edit\n")
    write_params(root / "params.yaml", probe={"new_key": 1}, report={"another": 2}, prompts={"n_val": 41})
    status = json.loads(dvc(root, "status", "--json"))
    assert "model" not in status, status
    assert {"dictionary", "prompts", "activations", "probes", "report"} <= set(status), status


LATER = ("probes", "report", "analysis")
"""Phases after the activations: nothing of theirs may invalidate stored activations."""
LATER_SECTIONS = ("probe", "report", "heads", "attribution", "interventions", "tokens")


def test_the_activations_stage_depends_on_nothing_of_a_later_phase() -> None:
    stage = _stages()["activations"]
    code = [d for d in stage["deps"] if d.startswith(f"src/{PACKAGE}/")]
    assert not [d for d in code if d.split("/")[2] in LATER], code
    assert not [p for p in stage["params"] if str(p).split(".")[0] in LATER_SECTIONS], stage["params"]


@pytest.mark.slow
def test_probe_report_and_analysis_edits_leave_the_activations_alone(project_copy: Path) -> None:
    """Editing every probe, report and analysis module and their params reruns the probes onward,
    never the extraction (minutes on GPT-2 small on a CPU, hours for a 7B model)."""
    root = project_copy
    package = root / "src" / PACKAGE
    edited = [p for phase in LATER for p in (package / phase).rglob("*.py")]
    assert len(edited) > 15
    for path in edited:
        path.write_text(path.read_text() + "\n# an edit\n")
    write_params(root / "params.yaml", probe={"token": "first", "C": 0.5}, report={"layers": [0]})
    status = json.loads(dvc(root, "status", "--json"))
    assert "activations" not in status and "model" not in status, status
    assert {"probes", "report"} <= set(status), status
