"""Stage `tokens`: the trained probes applied to every token of chosen texts, at every layer.

Writes the per-token table (data/tokens/tokens.parquet), a self-contained offline HTML
page (data/tokens/tokens.html) and one PNG per text (plots/tokens/text_N.png). The same
read-out for any text from a terminal: `python -m emergent_pos.tokens "some text" --layer 1`.
Run-time knobs: EMERGENT_POS_DEVICE and EMERGENT_POS_PLACEMENT (model/placement.py).
"""

import logging
from pathlib import Path

import pandas as pd

from emergent_pos.activations.config import ActivationsConfig
from emergent_pos.analysis import plots
from emergent_pos.analysis.config import TokensConfig, chosen_layers
from emergent_pos.analysis.tokens import encode, grid, load_probes, page, predict_tokens
from emergent_pos.config import ParamError, key, read_params, section
from emergent_pos.dataset.config import PromptsConfig
from emergent_pos.io.cli import PARAMS, run
from emergent_pos.io.files import atomic_path, save_figure, write_parquet
from emergent_pos.model.load import MODEL_DIR, load_bridge, read_card
from emergent_pos.model.placement import placement_from_env

logger = logging.getLogger("stages.tokens")
PLOTS = Path("plots/tokens")
DATA = Path("data/tokens")  # the HTML page lives here: `dvc plots` renders only images and data files


def main() -> None:
    raw = read_params(PARAMS)
    cfg = section(raw, "tokens", TokensConfig)
    processing = key(raw, "activations.processing", ActivationsConfig)
    bos = key(raw, "prompts.prepend_bos", PromptsConfig)
    card = read_card()
    n_layers = card["n_layers"]
    layers = chosen_layers("tokens.layers", cfg.layers, n_layers, card["name"])
    texts = list(cfg.texts)
    if cfg.text_file:
        try:
            texts += [p.strip() for p in Path(cfg.text_file).read_text().split("\n\n") if p.strip()]
        except OSError as err:
            raise ParamError("tokens.text_file", cfg.text_file, f"cannot read it ({err.strerror})") from err
    if not texts:
        raise ParamError("tokens.texts", cfg.texts, "give at least one text (or tokens.text_file)")
    bridge = load_bridge(MODEL_DIR, placement_from_env(), processing)
    n_ctx = card["n_ctx"]
    probes = load_probes(n_layers, layers)
    results = []
    for i, text in enumerate(texts):
        ids = encode(bridge.tokenizer, text, bos)
        if n_ctx is not None and len(ids) > n_ctx:
            raise ParamError(
                f"tokens.texts[{i}]", text[:40] + "...", f"{len(ids)} tokens; {card['name']} reads at most {n_ctx}"
            )
        df = predict_tokens(bridge, probes, ids).assign(text_id=i)
        results.append((text, df))
        tokens, shown, index, _ = grid(df)
        save_figure(
            plots.token_indices(tokens, shown, index, f"{card['name']}: predicted word index, text {i}"),
            PLOTS / f"text_{i}.png",
        )
        logger.info("text %d: %d tokens", i, len(ids))
    write_parquet(DATA / "tokens.parquet", pd.concat([df for _, df in results], ignore_index=True))
    with atomic_path(DATA / "tokens.html") as tmp:
        tmp.write_text(page(results, f"Word index read out by the probes of {card['name']}"))


if __name__ == "__main__":
    run(main)
