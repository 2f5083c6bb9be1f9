"""The seed's prompt recipe -> one row per token with its word labels.

A prompt is ``[BOS] + prefix + n_words words``: for each word slot a token length is
drawn uniformly from ``1..max_tokens``, then a word of that length uniformly. Token ids
are the concatenation of the per-word ids (so word boundaries are exact, not inferred);
``retokenizes_same`` records whether the plain string would tokenize to the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from transformers import PreTrainedTokenizerBase

from emergent_pos.config import ParamError
from emergent_pos.dataset.config import PromptsConfig

SPLITS = ("train", "val")
PROMPTS_DIR = Path("data/prompts")
COLUMNS = [
    "prompt_id",
    "prefix_id",
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
    def build(cls, tokenizer: PreTrainedTokenizerBase, cfg: PromptsConfig, prefix: str | None = None) -> PrefixIds:
        """Ids of ``prefix`` (default: the main ``prompts.prefix``)."""
        prefix = cfg.prefix if prefix is None else prefix
        ids = tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
        if cfg.prepend_bos:
            if tokenizer.bos_token_id is None:
                raise ParamError("prompts.prepend_bos", True, "this tokenizer has no BOS token; set it to false")
            ids = [tokenizer.bos_token_id, *ids]
        return cls(ids)


def check_fits(prefix: PrefixIds, cfg: PromptsConfig, max_tokens: int, n_ctx: int, key: str = "prompts.prefix") -> None:
    """Fail before sampling if the longest possible prompt exceeds the model's context.

    The prefix (``key`` names it) is blamed when it leaves no room for ``n_words``
    one-token words; otherwise the number of words is.
    """
    longest = len(prefix.ids) + cfg.n_words * max_tokens
    if longest <= n_ctx:
        return
    if len(prefix.ids) + cfg.n_words > n_ctx:
        value = cfg.prefix if key == "prompts.prefix" else "<the evaluation prefix>"
        raise ParamError(
            key,
            value if len(value) <= 60 else value[:57] + "...",
            f"the prefix takes {len(prefix.ids)} tokens (BOS included), leaving no room for "
            f"{cfg.n_words} words in the model's context of {n_ctx}",
        )
    raise ParamError(
        "prompts.n_words",
        cfg.n_words,
        f"prompts can reach {longest} tokens ({len(prefix.ids)} prefix + n_words x {max_tokens}) "
        f"but the model's context is {n_ctx}",
    )


# Peak bytes per token while the tables are built (Python lists, then pandas and
# parquet): measured ~240 at 1.3M tokens; rounded up.
BUILD_BYTES_PER_TOKEN = 300


def estimate_tokens(cfg: PromptsConfig, prefix_lengths: list[int], max_tokens: int) -> dict[str, int]:
    """Expected tokens of each split's table (word lengths are uniform in 1..max_tokens)."""
    words = cfg.n_words * (max_tokens + 1) / 2
    return {
        "train": int(cfg.n_train * (prefix_lengths[0] + words)),
        "val": int(cfg.n_val * sum(p + words for p in prefix_lengths)),
    }


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
    return df[[c for c in COLUMNS if c != "prefix_id"]]


def token_strings(tokenizer: PreTrainedTokenizerBase, ids: set[int]) -> dict[int, str]:
    """Readable text of each token (``" word"``, not ``"Ġword"``)."""
    return {i: tokenizer.decode([i]) for i in sorted(ids)}


def random_token_words(
    words: pd.DataFrame, max_tokens: int, n_per_length: int, rng: np.random.Generator
) -> pd.DataFrame:
    """Non-words: a random word-start token (one that begins with a space) followed by
    random continuation tokens, drawn from the tokens of the split's real words.

    Word boundaries are then marked only by the leading-space token: the seed's "random
    sequence of tokens that do/don't begin with a space".
    """
    starts = np.unique([t[0] for t in words.token_ids])
    conts = np.unique([i for t in words.token_ids for i in t[1:]])
    rows = []
    for n in range(1, max_tokens + 1):
        for _ in range(n_per_length):
            rows.append([int(rng.choice(starts)), *(int(i) for i in rng.choice(conts, size=n - 1))])
    return pd.DataFrame(
        {"word": ["#" + "-".join(map(str, r)) for r in rows], "token_ids": rows, "n_tokens": [len(r) for r in rows]}
    )


def prefixes(cfg: PromptsConfig) -> list[str]:
    """Prefix of each prefix_id: 0 is ``prompts.prefix``, then ``prompts.eval_prefixes``."""
    return [cfg.prefix, *cfg.eval_prefixes]


def build_prompts(
    train_words: pd.DataFrame,
    val_words: pd.DataFrame,
    tokenizer: PreTrainedTokenizerBase,
    cfg: PromptsConfig,
    max_tokens: int,
    seed: int,
) -> dict[str, pd.DataFrame]:
    """Both splits; each split has its own seeded stream so sizes change one split only.

    Validation prompts are repeated for every evaluation prefix with the same words, so
    prefix_id is the only difference between their copies.
    """
    if cfg.words == "random_tokens":
        train_words = random_token_words(train_words, max_tokens, 5000, np.random.default_rng([seed, 0x7A, 0]))
        val_words = random_token_words(val_words, max_tokens, 5000, np.random.default_rng([seed, 0x7A, 1]))
    prefix_ids = [PrefixIds.build(tokenizer, cfg, p) for p in prefixes(cfg)]
    ids = {i for p in prefix_ids for i in p.ids}
    for words in (train_words, val_words):
        for t in words.token_ids:
            ids.update(int(i) for i in t)
    strings = token_strings(tokenizer, ids)
    train = sample_prompts(
        train_words, cfg, cfg.n_train, prefix_ids[0], max_tokens, np.random.default_rng([seed, 0x9A0, 0]), strings
    )
    train.insert(1, "prefix_id", np.int32(0))
    vals = []
    for k, prefix in enumerate(prefix_ids):
        val = sample_prompts(
            val_words, cfg, cfg.n_val, prefix, max_tokens, np.random.default_rng([seed, 0x9A0, 1]), strings
        )
        val["prompt_id"] += k * cfg.n_val
        val.insert(1, "prefix_id", np.int32(k))
        vals.append(val)
    return {"train": train, "val": pd.concat(vals, ignore_index=True)}


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


def prompts_path(split: str, root: str | Path = PROMPTS_DIR) -> Path:
    """The per-token table of one split (``train``, ``val``)."""
    return Path(root) / f"{split}.parquet"
