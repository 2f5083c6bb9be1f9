"""Stage `prompts`: the seed's recipe -> per-token tables of train and validation prompts."""

import logging

import pandas as pd

from emergent_pos.config import key, read_params, section, seed
from emergent_pos.dataset.config import DictionaryConfig, PromptsConfig
from emergent_pos.dataset.dictionary import dictionary_path
from emergent_pos.dataset.prompts import (
    PrefixIds,
    build_prompts,
    check_fits,
    prefixes,
    prompts_path,
    retokenization_rate,
)
from emergent_pos.io.cli import PARAMS, run
from emergent_pos.io.files import write_json, write_parquet
from emergent_pos.model.load import load_tokenizer, read_card

logger = logging.getLogger("stages.prompts")


def main() -> None:
    raw = read_params(PARAMS)
    cfg, random_seed = section(raw, "prompts", PromptsConfig), seed(raw)
    max_tokens = key(raw, "dictionary.max_tokens", DictionaryConfig)
    tokenizer = load_tokenizer()
    n_ctx = read_card()["n_ctx"]
    for text in prefixes(cfg):
        check_fits(PrefixIds.build(tokenizer, cfg, text), cfg, max_tokens, n_ctx)
    prefix = PrefixIds.build(tokenizer, cfg)
    train_words = pd.read_parquet(dictionary_path("train"))
    val_words = pd.read_parquet(dictionary_path("val"))
    tables = build_prompts(train_words, val_words, tokenizer, cfg, max_tokens, random_seed)
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
        write_parquet(prompts_path(split), df)
    logger.info("prompts: %s", stats)
    write_json("metrics/prompts.json", stats)


if __name__ == "__main__":
    run(main)
