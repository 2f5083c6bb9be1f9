"""Stage `prompts`: the seed's recipe -> per-token tables of train and validation prompts."""

import logging

import pandas as pd

from emergent_pos.atomic import write_json, write_parquet
from emergent_pos.cli import run
from emergent_pos.config import load_params
from emergent_pos.model import load_tokenizer, read_card
from emergent_pos.prompts import PrefixIds, build_prompts, check_fits, prefixes, retokenization_rate

logger = logging.getLogger("stages.prompts")


def main() -> None:
    params = load_params("params.yaml", ["prompts", "dictionary"], need_seed=True)
    cfg, max_tokens = params.prompts, params.dictionary.max_tokens
    tokenizer = load_tokenizer("data/model")
    n_ctx = read_card("data/model")["n_ctx"]
    for text in prefixes(cfg):
        check_fits(PrefixIds.build(tokenizer, cfg, text), cfg, max_tokens, n_ctx)
    prefix = PrefixIds.build(tokenizer, cfg)
    train_words = pd.read_parquet("data/dictionary/train.parquet")
    val_words = pd.read_parquet("data/dictionary/val.parquet")
    tables = build_prompts(train_words, val_words, tokenizer, cfg, max_tokens, params.seed)
    stats = {"prefix_tokens": len(prefix.ids), "words": cfg.words, "n_prefixes": len(prefixes(cfg))}
    for split, df in tables.items():
        lengths = df.groupby("prompt_id").size()
        stats[split] = {
            "prompts": int(df.prompt_id.nunique()),
            "tokens": len(df),
            "word_ends": int(df.is_word_end.sum()),
            "min_length": int(lengths.min()),
            "max_length": int(lengths.max()),
            "retokenizes_same": round(retokenization_rate(df[df.prefix_id == 0], tokenizer, prefix), 4),
        }
        write_parquet(f"data/prompts/{split}.parquet", df)
    logger.info("prompts: %s", stats)
    write_json("metrics/prompts.json", stats)


if __name__ == "__main__":
    run(main)
