"""Stage `dictionary`: word source -> token lengths under the model's tokenizer -> train/val split."""

import logging

from emergent_pos.atomic import write_json, write_parquet
from emergent_pos.cli import run
from emergent_pos.config import load_params
from emergent_pos.dictionary import bucket_counts, build_dictionary, source_words
from emergent_pos.model import load_tokenizer

logger = logging.getLogger("stages.dictionary")


def main() -> None:
    params = load_params("params.yaml", ["dictionary"], need_seed=True)
    cfg = params.dictionary
    words, _ = source_words(cfg.source, cfg.n_words)
    train, val = build_dictionary(words, load_tokenizer("data/model"), cfg, params.seed)
    stats = {
        "source_words": len(words),
        "train_words_by_n_tokens": bucket_counts(train, cfg.max_tokens),
        "val_words_by_n_tokens": bucket_counts(val, cfg.max_tokens),
    }
    logger.info("dictionary: %s", stats)
    write_parquet("data/dictionary/train.parquet", train)
    write_parquet("data/dictionary/val.parquet", val)
    write_json("metrics/dictionary.json", stats)


if __name__ == "__main__":
    run(main)
