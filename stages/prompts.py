"""Stage `prompts`: the seed's recipe -> per-token tables of train and validation prompts."""

import logging

from emergent_pos.config import key, read_params, section, seed
from emergent_pos.dataset.config import DictionaryConfig, PromptsConfig
from emergent_pos.dataset.dictionary import dictionary_path
from emergent_pos.dataset.prompts import (
    BUILD_BYTES_PER_TOKEN,
    PrefixIds,
    build_prompts,
    check_fits,
    estimate_tokens,
    prefixes,
    prompts_path,
    retokenization_rate,
)
from emergent_pos.io.cli import PARAMS, run
from emergent_pos.io.files import read_parquet, write_json, write_parquet
from emergent_pos.io.resources import check_memory
from emergent_pos.model.load import load_tokenizer, read_card

logger = logging.getLogger("stages.prompts")


def main() -> None:
    raw = read_params(PARAMS)
    cfg, random_seed = section(raw, "prompts", PromptsConfig), seed(raw)
    max_tokens = key(raw, "dictionary.max_tokens", DictionaryConfig)
    tokenizer = load_tokenizer()
    n_ctx = read_card()["n_ctx"]
    built = [PrefixIds.build(tokenizer, cfg, text) for text in prefixes(cfg)]
    for i, ids in enumerate(built):
        check_fits(ids, cfg, max_tokens, n_ctx, "prompts.prefix" if i == 0 else f"prompts.eval_prefixes[{i - 1}]")
    tokens = estimate_tokens(cfg, [len(p.ids) for p in built], max_tokens)
    blame = "n_train" if tokens["train"] >= tokens["val"] else "n_val"
    check_memory(
        f"prompts.{blame}",
        getattr(cfg, blame),
        sum(tokens.values()) * BUILD_BYTES_PER_TOKEN,
        f"prompt tables of about {tokens['train']:,} train and {tokens['val']:,} val tokens",
    )
    prefix = built[0]
    train_words = read_parquet(dictionary_path("train"))
    val_words = read_parquet(dictionary_path("val"))
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
