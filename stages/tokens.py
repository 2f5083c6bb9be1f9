"""Stage `tokens`: the trained probes applied to every token of chosen texts, and scored on real text.

Writes the per-token table (data/tokens/tokens.parquet: each layer's prediction, and the
label every scheme's rule gives the token), a self-contained offline HTML page
(data/tokens/tokens.html), one PNG per text (plots/tokens/text_N.png), and the probes'
accuracy on the paragraphs of tokens.text_file against the labels the text itself
defines, beside the synthetic prompts' baselines (data/tokens/text.json). The same
read-out for any text from a terminal: `emergent-pos tokens "some text" --layer 1`.
Run-time knobs: EMERGENT_POS_DEVICE and EMERGENT_POS_PLACEMENT (model/placement.py).
"""

import json
import logging
from pathlib import Path

import pandas as pd

from emergent_pos.activations.config import ActivationsConfig
from emergent_pos.analysis import plots
from emergent_pos.analysis.config import TokensConfig, chosen_layers
from emergent_pos.analysis.tokens import evaluate_text, grid, page, predict_tokens
from emergent_pos.config import ParamError, key, read_params, section
from emergent_pos.dataset.config import PromptsConfig
from emergent_pos.dataset.labels import Points
from emergent_pos.dataset.prompts import prompts_path
from emergent_pos.dataset.text import read_text, text_table
from emergent_pos.io.cli import PARAMS, run
from emergent_pos.io.files import atomic_path, read_parquet, save_figure, write_json, write_parquet
from emergent_pos.model.load import MODEL_DIR, load_bridge, read_card
from emergent_pos.model.placement import placement_from_env
from emergent_pos.probes.linear import load_probes
from emergent_pos.probes.predictions import FITS, PROBES_DIR

logger = logging.getLogger("stages.tokens")
PLOTS = Path("plots/tokens")
DATA = Path("data/tokens")  # the HTML page lives here: `dvc plots` renders only images and data files


def main() -> None:
    raw = read_params(PARAMS)
    cfg = section(raw, "tokens", TokensConfig)
    processing = key(raw, "activations.processing", ActivationsConfig)
    bos = key(raw, "prompts.prepend_bos", PromptsConfig)
    card = read_card()
    n_layers, n_ctx = card["n_layers"], card["n_ctx"]
    layers = chosen_layers("tokens.layers", cfg.layers, n_layers, card["name"])
    paragraphs = []
    if cfg.text_file:
        paragraphs = [p.strip() for p in read_text(cfg.text_file, "tokens.text_file").split("\n\n") if p.strip()]
    texts = list(cfg.texts)
    if not texts and not paragraphs:
        raise ParamError("tokens.texts", cfg.texts, "give at least one text (or tokens.text_file)")
    fits = json.loads((PROBES_DIR / FITS).read_text())
    bridge = load_bridge(MODEL_DIR, placement_from_env(), processing)
    tok = bridge.tokenizer
    results, rows = [], []
    for i, text in enumerate(texts):
        labels = text_table(text, tok, bos)
        if n_ctx is not None and len(labels) > n_ctx:
            raise ParamError(
                f"tokens.texts[{i}]", text[:40] + "...", f"{len(labels)} tokens; {card['name']} reads {n_ctx}"
            )
        df = predict_tokens(bridge, load_probes(n_layers, layers), labels.token_id.tolist())
        truth = labels.drop(columns=["token_id", "token", "start", "end"])
        rows.append(df.merge(truth, on="position").assign(text_id=i))
        results.append((text, df))
        tokens, shown, index, _ = grid(df)
        title = f"{card['name']}: predicted {fits['scheme']} label, text {i}"
        save_figure(plots.token_indices(tokens, shown, index, title), PLOTS / f"text_{i}.png")
        logger.info("text %d: %d tokens", i, len(labels))
    write_parquet(DATA / "tokens.parquet", pd.concat(rows, ignore_index=True))
    with atomic_path(DATA / "tokens.html") as tmp:
        tmp.write_text(page(results, f"{fits['scheme']} labels read out by the probes of {card['name']}"))

    evaluation: dict = {
        "scheme": fits["scheme"],
        "text_file": cfg.text_file,
        "applies": False,
        "reason": "no text file",
    }
    if paragraphs:
        tables = [text_table(p, tok, bos, n_ctx) for p in paragraphs]
        train = Points.select(read_parquet(prompts_path("train")), fits["token"], fits["char_bin"] or 1)
        probes = load_probes(n_layers)
        evaluation = {
            "text_file": cfg.text_file,
            **evaluate_text(bridge, probes, tables, fits["scheme"], train, fits["char_bin"] or 1),
        }
        if evaluation["applies"]:
            best = evaluation["layers"][str(evaluation["best_layer"])]
            bases = ", ".join(f"{n} {b['accuracy']:.3f}" for n, b in evaluation["baselines"].items())
            logger.info(
                "%s on %s: %d points, best layer %d %.3f [%.3f, %.3f] vs %s",
                fits["scheme"],
                cfg.text_file,
                evaluation["n_points"],
                evaluation["best_layer"],
                best["accuracy"],
                *best["ci"],
                bases,
            )
    write_json(DATA / "text.json", evaluation)


if __name__ == "__main__":
    run(main)
