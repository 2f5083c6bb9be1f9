"""Words -> token lengths under the model's tokenizer -> a seeded train/val word split.

Validation prompts use only validation words, so a probe is always scored on words it
never saw in training. Each word's ids are kept as it tokenizes mid-sentence (after a
space: ``token_ids``, whose length sets its bucket) and at a line start (``line_start_ids``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from transformers import PreTrainedTokenizerBase

from emergent_pos.config import ParamError
from emergent_pos.dataset.config import DictionaryConfig

DICTIONARY_DIR = Path("data/dictionary")

# Words are tokenized after this context so that a tokenizer that marks word starts
# (GPT-2's "Ġ", SentencePiece's "▁") splits them exactly as it does inside a prompt.
CONTEXT = "When"


def tokenize_words(words: list[str], tokenizer: PreTrainedTokenizerBase, line_start: bool = False) -> list[list[int]]:
    """Token ids of each word as it appears in a prompt: after a space, mid-sentence; or, with
    ``line_start``, right after a newline without a space ([] where the tokenizer merges
    the newline into the word: the line schemes refuse such a tokenizer)."""
    lead = CONTEXT + ("\n" if line_start else "")
    ctx = tokenizer(lead, add_special_tokens=False)["input_ids"]
    full = tokenizer([f"{lead}{'' if line_start else ' '}{w}" for w in words], add_special_tokens=False)["input_ids"]
    out = []
    for word, ids in zip(words, full, strict=True):
        if ids[: len(ctx)] != ctx:
            if line_start:
                out.append([])
                continue
            raise ValueError(f"tokenizer merges {word!r} into the preceding context; cannot align words")
        out.append(ids[len(ctx) :])
    return out


def build_dictionary(
    words: list[str], tokenizer: PreTrainedTokenizerBase, cfg: DictionaryConfig, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tokenize, keep words of 1..max_tokens tokens, split by a seeded permutation.

    Each token-length bucket is split separately, so both splits hold every length in the
    same proportions (the prompt recipe draws the length first, then a word).
    """
    ids = tokenize_words(words, tokenizer)
    df = pd.DataFrame(
        {
            "word": words,
            "token_ids": ids,
            "n_tokens": [len(i) for i in ids],
            "line_start_ids": tokenize_words(words, tokenizer, line_start=True),
        }
    )
    df = df[df.n_tokens.between(1, cfg.max_tokens)].reset_index(drop=True)
    rng = np.random.default_rng([seed, 0xD1C7])
    is_train = np.zeros(len(df), dtype=bool)
    for _, idx in df.groupby("n_tokens").indices.items():
        order = rng.permutation(idx)
        is_train[order[: int(round(cfg.train_fraction * len(order)))]] = True
    train, val = df[is_train].reset_index(drop=True), df[~is_train].reset_index(drop=True)
    for name, part in (("train", train), ("val", val)):
        counts = part.n_tokens.value_counts()
        empty = [n for n in range(1, cfg.max_tokens + 1) if counts.get(n, 0) == 0]
        if empty:
            # a word list shorter than n_words is the source's fault, not n_words'
            key, value = ("source", cfg.source) if len(words) < cfg.n_words else ("n_words", cfg.n_words)
            raise ParamError(
                f"dictionary.{key}",
                value,
                f"the {name} split has no words of {empty} tokens (of {len(words)} source words); "
                + ("use a longer word list" if key == "source" else "use more words")
                + " or a lower dictionary.max_tokens",
            )
    return train, val


def bucket_counts(df: pd.DataFrame, max_tokens: int) -> list[int]:
    counts = df.n_tokens.value_counts()
    return [int(counts.get(n, 0)) for n in range(1, max_tokens + 1)]


def dictionary_path(split: str, root: str | Path = DICTIONARY_DIR) -> Path:
    return Path(root) / f"{split}.parquet"
