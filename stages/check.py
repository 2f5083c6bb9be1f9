"""Stage `check`: validate every section of params.yaml before any other stage runs.

It runs whenever params.yaml changes and fails in one line on a bad key or value (a
misspelt section included) or on a model that cannot be loaded or run here (a hub name
neither cached nor reachable, an architecture TransformerLens does not support), before
DVC removes a single output; its output never changes, so
passing it reruns nothing downstream.
"""

import logging

from emergent_pos.activations.config import ActivationsConfig
from emergent_pos.analysis.config import AttributionConfig, HeadsConfig, InterventionsConfig, TokensConfig
from emergent_pos.config import read_params, section, seed
from emergent_pos.dataset.config import DictionaryConfig, PromptsConfig
from emergent_pos.io.cli import PARAMS, run
from emergent_pos.io.files import atomic_path
from emergent_pos.model.config import ModelConfig, ToyConfig
from emergent_pos.model.hub import check_available
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


def main() -> None:
    raw = read_params(PARAMS)  # refuses sections that no stage declares
    seed(raw)
    for name, cls in SECTIONS.items():
        section(raw, name, cls)
    model = section(raw, "model", ModelConfig)
    if model.name == "toy":
        model.toy_steps(section(raw, "toy", ToyConfig))
    check_available(model)  # before DVC removes data/model
    with atomic_path("data/params.ok") as tmp:
        tmp.write_text("params.yaml passed validation\n")
    logging.getLogger("stages.check").info("params.yaml: %d sections valid", len(SECTIONS) + 1)


if __name__ == "__main__":
    run(main)
