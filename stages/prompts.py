"""Stage `prompts`: the scheme's recipe -> per-token tables of train, validation and held-out prompts."""

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
    check_lengths,
    check_prefix_fits,
    estimate_tokens,
    prefixes,
    prompts_path,
    retokenization_rate,
    same_length_prefix,
)
from emergent_pos.dataset.schemes import SCHEMES
from emergent_pos.io.cli import PARAMS, run
from emergent_pos.io.files import read_parquet, write_json, write_parquet
from emergent_pos.io.resources import check_memory
from emergent_pos.model.load import load_tokenizer, read_card

logger = logging.getLogger("stages.prompts")


def prefix_roles(cfg: PromptsConfig) -> list[tuple[str, str]]:
    """(param key, role) of each prefix_id, in order (the scheme's variants last)."""
    roles = [("prompts.prefix", "train")]
    roles += [(f"prompts.train_prefixes[{i}]", "train") for i in range(len(cfg.train_prefixes))]
    roles += [(f"prompts.eval_prefixes[{i}]", "held-out") for i in range(len(cfg.eval_prefixes))]
    if cfg.same_length_control:
        roles.append(("prompts.same_length_control", "same-length control"))
    return roles + [(f"{cfg.scheme} variant", name) for name in SCHEMES[cfg.scheme].variants]


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
    roles = prefix_roles(cfg)
    for i, (text, ids, (name, role)) in enumerate(zip(texts, built, roles, strict=False)):
        logger.info(
            "prefix %d (%s, %s): %d tokens %s", i, name, role, len(ids.ids), [tokenizer.decode([t]) for t in ids.ids]
        )
        if "\\n" in text:
            logger.warning(
                "%s holds a backslash followed by n, not a newline: to pass a newline through "
                "`dvc exp run -S`, quote the argument with $'...' (see docs/pipeline.md, Prompts)",
                name,
            )
        check_prefix_fits(ids, cfg, n_ctx, name)
    scheme = SCHEMES[cfg.scheme]
    tokens = estimate_tokens(cfg, [len(p.ids) for p in built], max_tokens)
    blame = "n_train" if tokens["train"] >= tokens["val"] else "n_val"
    check_memory(
        f"prompts.{blame}",
        getattr(cfg, blame),
        sum(tokens.values()) * BUILD_BYTES_PER_TOKEN,
        "prompt tables of about " + ", ".join(f"{n:,} {split}" for split, n in tokens.items()) + " tokens",
    )
    tables = build_prompts(train_words, val_words, tokenizer, cfg, max_tokens, random_seed, texts)
    check_lengths(tables, cfg, n_ctx)
    stats = {
        "scheme": cfg.scheme,
        "unit": scheme.unit,
        "rule": scheme.rule,
        "confound": scheme.confound,
        "prefix_tokens": len(built[0].ids),
        "words": cfg.words,
        "prefixes": [
            {"text": t, "tokens": len(p.ids), "key": name, "role": role}
            for t, p, (name, role) in zip(
                texts + [texts[0]] * len(scheme.variants), built + [built[0]] * len(scheme.variants), roles, strict=True
            )
        ],
        "eval_n_units": cfg.eval_n_units if scheme.countdown else [],
    }
    for split, df in tables.items():
        lengths = df.groupby("prompt_id").size()
        main = df[(df.prefix_id == 0) & (df.n_units == cfg.n_units)]
        stats[split] = {
            "prompts": int(df.prompt_id.nunique()),
            "tokens": len(df),
            "unit_ends": int(df.unit_end.sum()),
            "min_length": int(lengths.min()),
            "max_length": int(lengths.max()),
            "retokenizes_same": round(retokenization_rate(main, tokenizer, built[0]), 4),
        }
        write_parquet(prompts_path(split), df)
    logger.info("prompts: %s", stats)
    write_json(PROMPTS_DIR / "summary.json", stats)


if __name__ == "__main__":
    run(main)
