"""Stage `heads`: where every attention head looks from unit tokens, against a relative-position null.

Writes data/heads/heads.json (the best head per score, and every head's observed score,
interval and null), the layer x head heatmaps and the top heads' patterns
(plots/heads/). Run-time knobs: EMERGENT_POS_DEVICE and EMERGENT_POS_PLACEMENT (model/placement.py).
"""

import logging
from pathlib import Path

from emergent_pos.activations.config import ActivationsConfig
from emergent_pos.analysis import plots
from emergent_pos.analysis.applies import not_applicable
from emergent_pos.analysis.components import Layout, pattern_hook
from emergent_pos.analysis.config import HeadsConfig
from emergent_pos.analysis.forward import PromptSet, pad
from emergent_pos.analysis.heads import score_heads, summarize
from emergent_pos.config import key, read_params, section
from emergent_pos.dataset.config import PromptsConfig
from emergent_pos.dataset.prompts import prompts_path, token_strings
from emergent_pos.io.cli import PARAMS, run
from emergent_pos.io.files import read_parquet, save_figure, write_json
from emergent_pos.model.hooks import capture
from emergent_pos.model.load import MODEL_DIR, load_bridge, read_card
from emergent_pos.model.placement import placement_from_env

logger = logging.getLogger("stages.heads")
PLOTS = Path("plots/heads")
DATA = Path("data/heads")


def main() -> None:
    raw = read_params(PARAMS)
    cfg = section(raw, "heads", HeadsConfig)
    processing = key(raw, "activations.processing", ActivationsConfig)
    n_units = key(raw, "prompts.n_units", PromptsConfig)
    has_bos = key(raw, "prompts.prepend_bos", PromptsConfig)
    card = read_card()
    ps = PromptSet.from_table(read_parquet(prompts_path("val")), n_units, cfg.n_prompts)
    bridge = load_bridge(MODEL_DIR, placement_from_env(), processing)
    if not Layout.read(bridge).attention:
        reason = "it has no attention heads (a state-space model): there are no attention patterns to score"
        not_applicable("heads", card["name"], reason, [DATA / "heads.json"], [PLOTS / "scores.png"])
        return
    logger.info(
        "scoring %d heads of %s on %d validation prompts (%d tokens)",
        card["n_layers"] * bridge.cfg.n_heads,
        card["name"],
        len(ps),
        sum(len(t) for t in ps.tokens),
    )
    scores = score_heads(bridge, ps, has_bos)
    summary = summarize(scores, cfg.top_k)
    write_json(DATA / "heads.json", {"applies": True, "model": card["name"], **summary})
    for name, best in summary["best_by_score"].items():
        logger.info("%-22s best %s: %.3f (null %.3f)", name, best["head"], best["observed"], best["null"])
    obs, null = scores.means()
    save_figure(plots.head_scores(obs, null, f"Attention from unit tokens, {card['name']}"), PLOTS / "scores.png")
    examples = []
    for head in summary["top_heads"]:
        layer, index = (int(v) for v in head[1:].split("H"))
        for i in range(min(cfg.n_examples, len(ps))):
            got = capture(bridge, pad([ps.tokens[i]]), [pattern_hook(layer)], home="cpu")
            strings = token_strings(bridge.tokenizer, set(ps.tokens[i].tolist()))
            labels = [strings[t] for t in ps.tokens[i].tolist()]
            examples.append(
                (f"{head}, prompt {int(ps.prompt_id[i])}", got[pattern_hook(layer)][0, index].cpu().numpy(), labels)
            )
    title = f"{card['name']}: heads of largest excess over the null (any score); rows query, columns key"
    save_figure(plots.head_patterns(examples, title), PLOTS / "patterns.png")


if __name__ == "__main__":
    run(main)
