"""Stage `prompts`: the seed's recipe -> per-token tables of train, validation and held-out prompts."""

import logging

import numpy as np

from emergent_pos.config import key, read_params, section, seed
from emergent_pos.dataset.config import DictionaryConfig, PromptsConfig
from emergent_pos.dataset.dictionary import dictionary_path
from emergent_pos.dataset.prompts import (
    BUILD_BYTES_PER_TOKEN,
    PROMPTS_DIR,
    PrefixIds,
    build_prompts,
    check_fits,
    estimate_tokens,
    prefixes,
    prompts_path,
    retokenization_rate,
    same_length_prefix,
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
    train_words = read_parquet(dictionary_path("train"))
    val_words = read_parquet(dictionary_path("val"))
    texts = prefixes(cfg)
    if cfg.same_length_control:
        texts.append(same_length_prefix(tokenizer, cfg.prefix, val_words, np.random.default_rng([random_seed, 0x5A])))
    built = [PrefixIds.build(tokenizer, cfg, text) for text in texts]
    for i, (text, ids) in enumerate(zip(texts, built, strict=True)):
        name = "prompts.prefix" if i == 0 else f"prompts.eval_prefixes[{i - 1}]"
        if cfg.same_length_control and i == len(texts) - 1:
            name = "same-length control prefix"
        logger.info("prefix %d (%s): %d tokens %s", i, name, len(ids.ids), [tokenizer.decode([t]) for t in ids.ids])
        if "\\n" in text:
            logger.warning(
                "%s holds a backslash followed by n, not a newline: to pass a newline through "
                "`dvc exp run -S`, quote the argument with $'...' (see README)",
                name,
            )
        check_fits(ids, cfg, max_tokens, n_ctx, name if name.startswith("prompts.") else "prompts.same_length_control")
    tokens = estimate_tokens(cfg, [len(p.ids) for p in built], max_tokens)
    blame = "n_train" if tokens["train"] >= tokens["val"] else "n_val"
    check_memory(
        f"prompts.{blame}",
        getattr(cfg, blame),
        sum(tokens.values()) * BUILD_BYTES_PER_TOKEN,
        "prompt tables of about " + ", ".join(f"{n:,} {split}" for split, n in tokens.items()) + " tokens",
    )
    tables = build_prompts(train_words, val_words, tokenizer, cfg, max_tokens, random_seed, texts)
    stats = {
        "prefix_tokens": len(built[0].ids),
        "words": cfg.words,
        "prefixes": [{"text": t, "tokens": len(p.ids)} for t, p in zip(texts, built, strict=True)],
        "eval_n_words": cfg.eval_n_words,
    }
    for split, df in tables.items():
        lengths = df.groupby("prompt_id").size()
        main = df[(df.prefix_id == 0) & (df.n_words == cfg.n_words)]
        stats[split] = {
            "prompts": int(df.prompt_id.nunique()),
            "tokens": len(df),
            "word_ends": int(df.is_word_end.sum()),
            "min_length": int(lengths.min()),
            "max_length": int(lengths.max()),
            "retokenizes_same": round(retokenization_rate(main, tokenizer, built[0]), 4),
        }
        write_parquet(prompts_path(split), df)
    logger.info("prompts: %s", stats)
    write_json(PROMPTS_DIR / "summary.json", stats)


if __name__ == "__main__":
    run(main)
