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

SPLITS = ("train", "val", "heldout")
"""train: training words; val: validation words (every evaluation set); heldout: new prompts
of training words, where the word-type control is scored."""
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
    "n_words",
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


def check_fits(
    prefix: PrefixIds, cfg: PromptsConfig, max_tokens: int, n_ctx: int | None, key: str = "prompts.prefix"
) -> None:
    """Fail before sampling if the longest possible prompt exceeds the model's context.

    The prefix (``key`` names it) is blamed when it leaves no room for ``n_words``
    one-token words; otherwise the word count that makes prompts longest is. A model
    without a positional limit (``n_ctx`` None: state-space, ALiBi) takes any length.
    """
    n_words = max([cfg.n_words, *cfg.eval_n_words])
    longest = len(prefix.ids) + n_words * max_tokens
    if n_ctx is None or longest <= n_ctx:
        return
    if len(prefix.ids) + cfg.n_words > n_ctx:
        value = cfg.prefix if key == "prompts.prefix" else "<the evaluation prefix>"
        raise ParamError(
            key,
            value if len(value) <= 60 else value[:57] + "...",
            f"the prefix takes {len(prefix.ids)} tokens (BOS included), leaving no room for "
            f"{cfg.n_words} words in the model's context of {n_ctx}",
        )
    words_key, value = ("n_words", cfg.n_words) if n_words == cfg.n_words else ("eval_n_words", cfg.eval_n_words)
    raise ParamError(
        f"prompts.{words_key}",
        value,
        f"prompts can reach {longest} tokens ({len(prefix.ids)} prefix + {n_words} words x {max_tokens}) "
        f"but the model's context is {n_ctx}",
    )


# Peak bytes per token while the tables are built (Python lists, then pandas and
# parquet): measured ~240 at 1.3M tokens; rounded up.
BUILD_BYTES_PER_TOKEN = 300


def estimate_tokens(cfg: PromptsConfig, prefix_lengths: list[int], max_tokens: int) -> dict[str, int]:
    """Expected tokens of each split's table (word lengths are uniform in 1..max_tokens)."""
    mean = (max_tokens + 1) / 2
    main = prefix_lengths[0] + cfg.n_words * mean
    val = sum(prefix_lengths[s.prefix_id] + s.n_words * mean for s in eval_sets(cfg, len(prefix_lengths)))
    return {"train": int(cfg.n_train * main), "val": int(cfg.n_val * val), "heldout": int(cfg.n_heldout * main)}


def sample_prompts(
    words: pd.DataFrame,
    n_prompts: int,
    n_words: int,
    prefix: PrefixIds,
    max_tokens: int,
    rng: np.random.Generator,
    token_strings: dict[int, str],
) -> pd.DataFrame:
    """Per-token table of ``n_prompts`` prompts of ``n_words`` words from one split's ``words``."""
    buckets = [words[words.n_tokens == n].reset_index(drop=True) for n in range(1, max_tokens + 1)]
    lengths = rng.integers(1, max_tokens + 1, size=(n_prompts, n_words))
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
        for w in range(n_words):
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
    df["n_words"] = n_words
    for c in ("prompt_id", "position", "token_id", "word_index", "token_in_word", "word_n_tokens", "n_words"):
        df[c] = df[c].astype(np.int32)
    return df[[c for c in COLUMNS if c != "prefix_id"]]


def token_strings(tokenizer: PreTrainedTokenizerBase, ids: set[int]) -> dict[int, str]:
    """Readable text of each token as it reads inside a prompt (``" word"``, not ``"Ġword"``).

    Each token is decoded after a fixed lead token and the lead's text is cut off:
    SentencePiece decoders (Llama, Gemma) drop the space of a sequence's first
    ``"▁word"``, which ``decode([id])`` alone would lose. Special tokens, and tokens
    whose text does not follow the lead's, are decoded alone.
    """
    lead = tokenizer("a", add_special_tokens=False)["input_ids"][-1:]
    head = tokenizer.decode(lead) if lead else ""
    special = set(tokenizer.all_special_ids)
    out = {}
    for i in sorted(ids):
        text = tokenizer.decode([*lead, i]) if lead and i not in special else ""
        out[i] = text[len(head) :] if head and text.startswith(head) else tokenizer.decode([i])
    return out


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
    """The given prefixes: 0 is ``prompts.prefix``, then ``prompts.eval_prefixes``."""
    return [cfg.prefix, *cfg.eval_prefixes]


def same_length_prefix(
    tokenizer: PreTrainedTokenizerBase, prefix: str, words: pd.DataFrame, rng: np.random.Generator
) -> str:
    """A prefix of other words with exactly as many tokens as ``prefix`` and its ending.

    It keeps the prefix's last line (the anchor, ``"\nWhen"``) and replaces the text
    before it by random one-token words of the split, so every absolute position is kept
    and only the text differs.
    """
    head, sep, anchor = prefix.rpartition("\n")
    if not sep:
        head, anchor = prefix, ""
    target = len(tokenizer(head, add_special_tokens=False)["input_ids"]) if head else 0
    ones = words[words.n_tokens == 1].word.tolist()
    if target == 0:
        return prefix
    for _ in range(100):
        picked = list(rng.choice(ones, size=max(1, target - 1)))
        text = " ".join(picked) + "."
        n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        while n > target and len(picked) > 1:
            picked.pop()
            text = " ".join(picked) + "."
            n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        full = text + sep + anchor
        if n == target and len(tokenizer(full, add_special_tokens=False)["input_ids"]) == len(
            tokenizer(prefix, add_special_tokens=False)["input_ids"]
        ):
            return full
    raise ParamError(
        "prompts.same_length_control", True, f"no text of one-token words tokenizes to the prefix's {target} tokens"
    )


@dataclass(frozen=True)
class EvalSet:
    """One group of validation prompts: which prefix, how many words."""

    prefix_id: int
    n_words: int


def eval_sets(cfg: PromptsConfig, n_prefixes: int) -> list[EvalSet]:
    """Every prefix at ``n_words`` (the first is the main set), then prefix 0 at each other length."""
    return [EvalSet(k, cfg.n_words) for k in range(n_prefixes)] + [EvalSet(0, m) for m in cfg.eval_n_words]


def build_prompts(
    train_words: pd.DataFrame,
    val_words: pd.DataFrame,
    tokenizer: PreTrainedTokenizerBase,
    cfg: PromptsConfig,
    max_tokens: int,
    seed: int,
    texts: list[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Every split; each has its own seeded stream, so sizes change one split only.

    ``texts`` are the prefixes (default ``prefixes(cfg)``). Validation prompts are drawn
    for every evaluation set from the same stream: the prefix copies have the same words,
    so prefix_id is the only difference between them.
    """
    texts = prefixes(cfg) if texts is None else texts
    if cfg.words == "random_tokens":
        train_words = random_token_words(train_words, max_tokens, 5000, np.random.default_rng([seed, 0x7A, 0]))
        val_words = random_token_words(val_words, max_tokens, 5000, np.random.default_rng([seed, 0x7A, 1]))
    prefix_ids = [PrefixIds.build(tokenizer, cfg, p) for p in texts]
    ids = {i for p in prefix_ids for i in p.ids}
    for words in (train_words, val_words):
        for t in words.token_ids:
            ids.update(int(i) for i in t)
    strings = token_strings(tokenizer, ids)

    def draw(words: pd.DataFrame, n: int, stream: int, k: int = 0, n_words: int = cfg.n_words) -> pd.DataFrame:
        rng = np.random.default_rng([seed, 0x9A0, stream])
        df = sample_prompts(words, n, n_words, prefix_ids[k], max_tokens, rng, strings)
        df.insert(1, "prefix_id", np.int32(k))
        return df

    vals = []
    for i, s in enumerate(eval_sets(cfg, len(prefix_ids))):
        val = draw(val_words, cfg.n_val, 1, s.prefix_id, s.n_words)
        val["prompt_id"] += i * cfg.n_val
        vals.append(val)
    train = draw(train_words, cfg.n_train, 0)
    # held-out prompts reuse the words the training prompts hold: the types a probe could memorise
    seen = train_words[train_words.word.isin(set(train.word))]
    return {"train": train, "val": pd.concat(vals, ignore_index=True), "heldout": draw(seen, cfg.n_heldout, 2)}


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
