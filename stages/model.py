"""Stage `model`: build data/model/ (toy organism or a Hugging Face model), its card and curve."""

import logging
import time
from pathlib import Path

from emergent_pos import plots
from emergent_pos.atomic import write_json
from emergent_pos.cli import run
from emergent_pos.config import load_params
from emergent_pos.model import build_model, save_model


def main() -> None:
    params = load_params("params.yaml", ["model", "toy"], need_seed=True)
    t0 = time.perf_counter()
    model, tok, curve = build_model(params.model, params.toy, params.seed)
    card = save_model(model, tok, params.model, params.seed, Path("data/model"))
    card["final_training_loss"] = round(curve[-1]["loss"], 4) if curve else None
    write_json("metrics/model.json", card)
    write_json("plots/model/training_loss.json", curve)
    logging.getLogger("stages.model").info("model stage done in %.0fs", time.perf_counter() - t0)
    plots.training_curve(curve, f"{params.model.name} ({params.model.init})", "plots/model/training_loss.png")


if __name__ == "__main__":
    run(main)
