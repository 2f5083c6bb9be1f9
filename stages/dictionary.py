"""Stage `dictionary`: word source -> token lengths under the model's tokenizer -> train/val split."""

import logging

from emergent_pos.config import read_params, section, seed
from emergent_pos.dataset.config import DictionaryConfig
from emergent_pos.dataset.dictionary import DICTIONARY_DIR, bucket_counts, build_dictionary, dictionary_path
from emergent_pos.dataset.words import source_words
from emergent_pos.io.cli import PARAMS, run
from emergent_pos.io.files import write_json, write_parquet
from emergent_pos.model.load import load_tokenizer

logger = logging.getLogger("stages.dictionary")


def main() -> None:
    raw = read_params(PARAMS)
    cfg, random_seed = section(raw, "dictionary", DictionaryConfig), seed(raw)
    words, _ = source_words(cfg.source, cfg.n_words)
    train, val = build_dictionary(words, load_tokenizer(), cfg, random_seed)
    stats = {
        "source_words": len(words),
        "train_words_by_n_tokens": bucket_counts(train, cfg.max_tokens),
        "val_words_by_n_tokens": bucket_counts(val, cfg.max_tokens),
    }
    logger.info("dictionary: %s", stats)
    write_parquet(dictionary_path("train"), train)
    write_parquet(dictionary_path("val"), val)
    write_json(DICTIONARY_DIR / "summary.json", stats)


if __name__ == "__main__":
    run(main)
