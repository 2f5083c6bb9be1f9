"""Stage `model`: build data/model/ (toy organism or a Hugging Face model), its card and curve."""

import json
import logging
import time

from emergent_pos.config import read_params, section, seed
from emergent_pos.io.cli import PARAMS, run
from emergent_pos.io.files import save_figure, write_json
from emergent_pos.model.build import build_model, save_model
from emergent_pos.model.config import ModelConfig, ToyConfig
from emergent_pos.model.load import MODEL_DIR
from emergent_pos.model.plots import training_curve


def main() -> None:
    raw = read_params(PARAMS)
    cfg, toy, random_seed = section(raw, "model", ModelConfig), section(raw, "toy", ToyConfig), seed(raw)
    t0 = time.perf_counter()
    model, tok, curve = build_model(cfg, toy, random_seed)
    card = save_model(model, tok, cfg, random_seed, MODEL_DIR)
    write_json("plots/model/training_loss.json", curve)
    final = f"; final training loss {curve[-1]['loss']:.4f}" if curve else ""
    logging.getLogger("stages.model").info(
        "model stage done in %.0fs%s; card %s", time.perf_counter() - t0, final, json.dumps(card)
    )
    revision = "" if cfg.revision == "main" else f" at {cfg.revision}"
    save_figure(training_curve(curve, f"{cfg.name}{revision} ({cfg.init})"), "plots/model/training_loss.png")


if __name__ == "__main__":
    run(main)
