"""The seed's prompt recipe -> one row per token with its word labels.

A prompt is ``[BOS] + prefix + n_words words``: for each word slot a token length is
drawn uniformly from ``1..max_tokens``, then a word of that length uniformly. Token ids
are the concatenation of the per-word ids (so word boundaries are exact, not inferred);
``retokenizes_same`` records whether the plain string would tokenize to the same ids.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from transformers import PreTrainedTokenizerBase

from emergent_pos.config import ParamError, PromptsConfig

SPLITS = ("train", "val")
COLUMNS = [
    "prompt_id",
    "position",
    "token_id",
    "token",
    "word",
    "word_index",
    "token_in_word",
    "word_n_tokens",
    "is_word_start",
    "is_word_end",
]


@dataclass(frozen=True)
class PrefixIds:
    """Token ids that open every prompt (BOS included when the recipe asks for it)."""

    ids: list[int]

    @classmethod
    def build(cls, tokenizer: PreTrainedTokenizerBase, cfg: PromptsConfig) -> PrefixIds:
        ids = tokenizer(cfg.prefix, add_special_tokens=False)["input_ids"] if cfg.prefix else []
        if cfg.prepend_bos:
            if tokenizer.bos_token_id is None:
                raise ParamError("prompts.prepend_bos", True, "this tokenizer has no BOS token; set it to false")
            ids = [tokenizer.bos_token_id, *ids]
        return cls(ids)


def check_fits(prefix: PrefixIds, cfg: PromptsConfig, max_tokens: int, n_ctx: int) -> None:
    """Fail before sampling if the longest possible prompt exceeds the model's context."""
    longest = len(prefix.ids) + cfg.n_words * max_tokens
    if longest > n_ctx:
        raise ParamError(
            "prompts.n_words",
            cfg.n_words,
            f"prompts can reach {longest} tokens ({len(prefix.ids)} prefix + n_words x {max_tokens}) "
            f"but the model's context is {n_ctx}",
        )


def sample_prompts(
    words: pd.DataFrame,
    cfg: PromptsConfig,
    n_prompts: int,
    prefix: PrefixIds,
    max_tokens: int,
    rng: np.random.Generator,
    token_strings: dict[int, str],
) -> pd.DataFrame:
    """Per-token table of ``n_prompts`` prompts drawn from one split's ``words``."""
    buckets = [words[words.n_tokens == n].reset_index(drop=True) for n in range(1, max_tokens + 1)]
    lengths = rng.integers(1, max_tokens + 1, size=(n_prompts, cfg.n_words))
    picks = np.empty_like(lengths)
    for n in range(1, max_tokens + 1):
        mask = lengths == n
        picks[mask] = rng.integers(0, len(buckets[n - 1]), size=int(mask.sum()))
    base = ["prompt_id", "position", "token_id", "word", "word_index", "token_in_word", "word_n_tokens"]
    cols: dict[str, list] = {c: [] for c in base}
    n_prefix = len(prefix.ids)
    for p in range(n_prompts):
        ids = list(prefix.ids)
        cols["word"] += [""] * n_prefix
        cols["word_index"] += [-1] * n_prefix
        cols["token_in_word"] += [-1] * n_prefix
        cols["word_n_tokens"] += [0] * n_prefix
        for w in range(cfg.n_words):
            row = buckets[lengths[p, w] - 1].iloc[picks[p, w]]
            n = len(row.token_ids)
            ids += list(row.token_ids)
            cols["word"] += [row.word] * n
            cols["word_index"] += [w] * n
            cols["token_in_word"] += list(range(n))
            cols["word_n_tokens"] += [n] * n
        cols["prompt_id"] += [p] * len(ids)
        cols["position"] += list(range(len(ids)))
        cols["token_id"] += ids
    df = pd.DataFrame(cols)
    df["token"] = df.token_id.map(token_strings)
    df["is_word_start"] = df.token_in_word == 0
    df["is_word_end"] = (df.word_index >= 0) & (df.token_in_word == df.word_n_tokens - 1)
    for c in ("prompt_id", "position", "token_id", "word_index", "token_in_word", "word_n_tokens"):
        df[c] = df[c].astype(np.int32)
    return df[COLUMNS]


def token_strings(tokenizer: PreTrainedTokenizerBase, ids: set[int]) -> dict[int, str]:
    """Readable text of each token (``" word"``, not ``"Ġword"``)."""
    return {i: tokenizer.decode([i]) for i in sorted(ids)}


def build_prompts(
    train_words: pd.DataFrame,
    val_words: pd.DataFrame,
    tokenizer: PreTrainedTokenizerBase,
    cfg: PromptsConfig,
    max_tokens: int,
    seed: int,
) -> dict[str, pd.DataFrame]:
    """Both splits; each split has its own seeded stream so sizes change one split only."""
    prefix = PrefixIds.build(tokenizer, cfg)
    ids = set(prefix.ids)
    for words in (train_words, val_words):
        for t in words.token_ids:
            ids.update(int(i) for i in t)
    strings = token_strings(tokenizer, ids)
    out = {}
    for code, (split, words, n) in enumerate((("train", train_words, cfg.n_train), ("val", val_words, cfg.n_val))):
        rng = np.random.default_rng([seed, 0x9A0, code])
        out[split] = sample_prompts(words, cfg, n, prefix, max_tokens, rng, strings)
    return out


def prompt_token_ids(df: pd.DataFrame) -> list[np.ndarray]:
    """Token ids of each prompt, in prompt_id order (rows are sorted by prompt, position)."""
    starts = np.flatnonzero(df.position.to_numpy() == 0)
    return np.split(df.token_id.to_numpy(), starts[1:])


def retokenization_rate(df: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, prefix: PrefixIds) -> float:
    """Fraction of prompts whose decoded text tokenizes back to exactly their ids."""
    seqs = prompt_token_ids(df)
    n_special = len(prefix.ids) - len(
        tokenizer(tokenizer.decode(prefix.ids, skip_special_tokens=True), add_special_tokens=False)["input_ids"]
    )
    texts = [tokenizer.decode(s[n_special:]) for s in seqs]
    again = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return float(np.mean([list(s[n_special:]) == a for s, a in zip(seqs, again, strict=True)]))


def file_hash(path: str | Path) -> str:
    """sha256 of a file: activations record the prompts' hash and readers check it."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
