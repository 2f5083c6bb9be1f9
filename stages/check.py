"""Stage `check`: validate every section of params.yaml before any other stage runs.

It runs whenever params.yaml changes and fails in one line on a bad key or value (a
misspelt section included), on a key dvc.yaml declares that params.yaml lacks (DVC would
stop on it only after removing outputs), on more units per prompt than the model's
context holds, or on a model that cannot be loaded or run here (a hub name neither
cached nor reachable, an architecture TransformerLens does not support), before DVC
removes a single output; its output never changes, so passing it reruns nothing
downstream.
"""

import logging
from pathlib import Path

import yaml

from emergent_pos.activations.config import ActivationsConfig
from emergent_pos.analysis.config import AttributionConfig, HeadsConfig, InterventionsConfig, TokensConfig
from emergent_pos.config import ParamError, read_params, section, seed
from emergent_pos.dataset.config import DictionaryConfig, PromptsConfig
from emergent_pos.io.cli import PARAMS, PIPELINE, run
from emergent_pos.io.files import atomic_path
from emergent_pos.model.config import ModelConfig, ToyConfig
from emergent_pos.model.hub import check_available
from emergent_pos.model.load import context_length
from emergent_pos.probes.config import ProbeConfig
from emergent_pos.report.config import ReportConfig

SECTIONS = {
    "model": ModelConfig,
    "toy": ToyConfig,
    "dictionary": DictionaryConfig,
    "prompts": PromptsConfig,
    "activations": ActivationsConfig,
    "probe": ProbeConfig,
    "report": ReportConfig,
    "heads": HeadsConfig,
    "attribution": AttributionConfig,
    "interventions": InterventionsConfig,
    "tokens": TokensConfig,
}


def declared_keys(pipeline: Path) -> list[tuple[str, str]]:
    """(stage, dotted params key) of every params entry in dvc.yaml."""
    stages = (yaml.safe_load(pipeline.read_text()) or {}).get("stages", {})
    return [(name, str(k)) for name, st in stages.items() for k in st.get("params", []) if isinstance(k, str)]


def check_declared(raw: dict, pipeline: Path) -> None:
    """Every key a stage declares must be in params.yaml: DVC stops on a missing one only after
    removing that stage's outputs."""
    for stage, dotted in declared_keys(pipeline):
        node: object = raw
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ParamError(
                    dotted,
                    "<missing>",
                    f"params.yaml lacks it and dvc.yaml's stage {stage} reads it: restore it "
                    "(`git checkout params.yaml`, or copy it from the repository's params.yaml)",
                )
            node = node[part]


def main() -> None:
    raw = read_params(PARAMS)  # refuses sections that no stage declares
    check_declared(raw, Path(PIPELINE))
    seed(raw)
    for name, cls in SECTIONS.items():
        section(raw, name, cls)
    model = section(raw, "model", ModelConfig)
    toy = section(raw, "toy", ToyConfig)
    if model.name == "toy":
        model.toy_steps(toy)
    config = check_available(model)  # before DVC removes data/model
    n_ctx = toy.n_positions if model.name == "toy" else context_length(config) if config is not None else None
    prompts = section(raw, "prompts", PromptsConfig)
    for key, value, count in (
        ("n_units", prompts.n_units, prompts.n_units),
        ("eval_n_units", prompts.eval_n_units, max(prompts.eval_n_units, default=0)),
    ):
        if n_ctx is not None and count >= n_ctx:
            raise ParamError(
                f"prompts.{key}", value, f"each unit takes at least a token; {model.name}'s context is {n_ctx}"
            )
    with atomic_path("data/params.ok") as tmp:
        tmp.write_text("params.yaml passed validation\n")
    logging.getLogger("stages.check").info("params.yaml: %d sections valid", len(SECTIONS) + 1)


if __name__ == "__main__":
    run(main)
