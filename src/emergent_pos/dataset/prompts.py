"""Prompt tables: ``[BOS] + prefix + anchor + body`` -> one row per token, for any reference scheme.

The scheme (``prompts.scheme``, ``schemes/``) builds each body from the word list; this
module adds what every scheme shares: the prefixes (the training prefix, more training
prefixes, held-out prefixes and a same-length control), the three splits with their
own seeded streams, the evaluation sets, token strings and the retokenization check.
Token ids are the concatenation of per-piece ids (so unit boundaries are exact, not
inferred); ``retokenizes_same`` records whether the plain string would tokenize to the
same ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from transformers import PreTrainedTokenizerBase

from emergent_pos.config import ParamError
from emergent_pos.dataset.config import PromptsConfig
from emergent_pos.dataset.schemes import SCHEMES
from emergent_pos.dataset.schemes.base import COLUMNS, PromptBuilder, Recipe, Scheme, TokenText, WordPool

SPLITS = ("train", "val", "heldout")
"""train: training words; val: validation words (every evaluation set); heldout: new prompts
of training words, where the word-type control is scored."""
PROMPTS_DIR = Path("data/prompts")
__all__ = ["COLUMNS", "SPLITS", "PROMPTS_DIR"]


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


def check_prefix_fits(prefix: PrefixIds, cfg: PromptsConfig, n_ctx: int | None, key: str = "prompts.prefix") -> None:
    """Fail before sampling if the prefix alone leaves no room for ``n_units`` one-token units
    (the key blamed is the prefix's when the prefix alone fills the context, ``n_units``'s
    otherwise). A model without a positional limit (``n_ctx`` None: state-space, ALiBi)
    takes any length."""
    if n_ctx is None or len(prefix.ids) + cfg.n_units <= n_ctx:
        return
    if len(prefix.ids) < n_ctx // 2:
        raise ParamError(
            "prompts.n_units", cfg.n_units, f"at least {cfg.n_units} tokens a prompt; the context is {n_ctx}"
        )
    value = cfg.prefix if key == "prompts.prefix" else "<this prefix>"
    raise ParamError(
        key,
        value if len(value) <= 60 else value[:57] + "...",
        f"the prefix takes {len(prefix.ids)} tokens (BOS included), leaving no room for "
        f"{cfg.n_units} units in the model's context of {n_ctx}",
    )


def check_lengths(tables: dict[str, pd.DataFrame], cfg: PromptsConfig, n_ctx: int | None) -> None:
    """Refuse prompts longer than the model's context, naming the count that made the longest."""
    if n_ctx is None:
        return
    sizes = pd.concat([df.groupby(["prompt_id", "n_units"]).size() for df in tables.values()])
    (_, n_units), longest = sizes.idxmax(), int(sizes.max())
    if longest <= n_ctx:
        return
    key, value = ("n_units", cfg.n_units) if n_units == cfg.n_units else ("eval_n_units", cfg.eval_n_units)
    raise ParamError(
        f"prompts.{key}",
        value,
        f"prompts reach {longest} tokens ({cfg.scheme}) but the model's context is {n_ctx}: use fewer or shorter units",
    )


# Peak bytes per token while the tables are built (Python lists, then pandas and
# parquet): measured ~240 at 1.3M tokens; rounded up.
BUILD_BYTES_PER_TOKEN = 300


def recipe(cfg: PromptsConfig, max_tokens: int, n_units: int | None = None) -> Recipe:
    """The scheme's recipe params, at ``n_units`` (default ``prompts.n_units``)."""
    return Recipe(
        n_units=cfg.n_units if n_units is None else n_units,
        unit_words=(cfg.unit_words[0], cfg.unit_words[1]),
        line_width=(cfg.line_width[0], cfg.line_width[1]),
        max_tokens=max_tokens,
    )


def estimate_tokens(cfg: PromptsConfig, prefix_lengths: list[int], max_tokens: int) -> dict[str, int]:
    """Expected tokens of each split's table, from the scheme's mean body length."""
    scheme = SCHEMES[cfg.scheme]
    body = scheme.mean_tokens(recipe(cfg, max_tokens))
    n_train_prefixes = 1 + len(cfg.train_prefixes)
    train = cfg.n_train * (np.mean(prefix_lengths[:n_train_prefixes]) + body)
    val = sum(
        cfg.n_val
        * (prefix_lengths[s.prefix] + scheme.mean_tokens(recipe(cfg, max_tokens, s.n_units)) * (1 + bool(s.variant)))
        for s in eval_sets(cfg, len(prefix_lengths))
    )
    return {"train": int(train), "val": int(val), "heldout": int(cfg.n_heldout * (prefix_lengths[0] + body))}


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
    names = ["#" + "-".join(map(str, r)) for r in rows]
    return pd.DataFrame({"word": names, "token_ids": rows, "n_tokens": [len(r) for r in rows], "line_start_ids": rows})


def prefixes(cfg: PromptsConfig) -> list[str]:
    """The given prefixes: 0 is ``prompts.prefix``, then ``prompts.train_prefixes``, then
    ``prompts.eval_prefixes`` (the stage appends the same-length control)."""
    return [cfg.prefix, *cfg.train_prefixes, *cfg.eval_prefixes]


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
    if target == 0:
        return prefix

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def fits(text: str) -> bool:
        return count(text) == target and count(text + sep + anchor) == count(prefix)

    ones = words[words.n_tokens == 1].word.tolist()
    for _ in range(100 if ones else 0):
        picked = list(rng.choice(ones, size=max(1, target - 1)))
        text = " ".join(picked) + "."
        while count(text) > target and len(picked) > 1:
            picked.pop()
            text = " ".join(picked) + "."
        if fits(text):
            return text + sep + anchor
    # a tokenizer whose one-token words do not add up (its first word without a space splits
    # differently): words of any length, added until the count is reached
    every = words.word.tolist()
    for _ in range(1000):
        picked = [str(rng.choice(every))]
        while count(" ".join(picked) + ".") < target:
            picked.append(str(rng.choice(every)))
        text = " ".join(picked) + "."
        if fits(text):
            return text + sep + anchor
    raise ParamError(
        "prompts.same_length_control", True, f"no text of the split's words tokenizes to the prefix's {target} tokens"
    )


@dataclass(frozen=True)
class EvalSet:
    """One group of validation prompts: its ``prefix_id``, the prefix text it opens with, how
    many units, and the scheme's variant of the body (``""``: the recipe itself)."""

    prefix_id: int
    n_units: int
    text: int = -1  # index of the prefix text (-1: prefix_id's own)
    variant: str = ""

    @property
    def prefix(self) -> int:
        return self.prefix_id if self.text < 0 else self.text


def eval_sets(cfg: PromptsConfig, n_prefixes: int) -> list[EvalSet]:
    """Every prefix at ``n_units`` (the first is the main set), then prefix 0 at each other count
    (when the scheme's count can be told from a countdown), then each of the scheme's variants
    of prefix 0 under a ``prefix_id`` of its own (after every prefix's)."""
    scheme = SCHEMES[cfg.scheme]
    others = cfg.eval_n_units if scheme.countdown else []
    variants = [EvalSet(n_prefixes + j, cfg.n_units, 0, name) for j, name in enumerate(scheme.variants)]
    return [EvalSet(k, cfg.n_units) for k in range(n_prefixes)] + [EvalSet(0, m) for m in others] + variants


def heldout_pool(train_words: pd.DataFrame, train: pd.DataFrame, max_tokens: int, n_train: int) -> pd.DataFrame:
    """The training words the training prompts hold (the types a probe could memorise): where the
    word-type control is scored. Every token length must be among them."""
    seen = train_words[train_words.word.isin(set(train.word))]
    missing = sorted(set(range(1, max_tokens + 1)) - set(seen.n_tokens))
    if missing:
        raise ParamError(
            "prompts.n_train",
            n_train,
            f"the training prompts hold no word of {missing} tokens, so held-out prompts of training words "
            "cannot be drawn: use more training prompts",
        )
    return seen


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

    ``texts`` are the prefixes (default ``prefixes(cfg)``). Training prompts are split
    evenly over prefix 0 and ``prompts.train_prefixes``. Validation prompts are drawn
    for every evaluation set from the same stream: the prefix copies have the same
    bodies, so prefix_id is the only difference between them.
    """
    scheme: Scheme = SCHEMES[cfg.scheme]
    texts = prefixes(cfg) if texts is None else texts
    if cfg.words == "random_tokens":
        train_words = random_token_words(train_words, max_tokens, 5000, np.random.default_rng([seed, 0x7A, 0]))
        val_words = random_token_words(val_words, max_tokens, 5000, np.random.default_rng([seed, 0x7A, 1]))
    prefix_ids = [PrefixIds.build(tokenizer, cfg, p) for p in texts]
    tokens = TokenText(tokenizer)
    pools = {"train": WordPool.from_table(train_words, max_tokens), "val": WordPool.from_table(val_words, max_tokens)}

    def draw(pool: WordPool, n: int, stream: tuple[int, ...], s: EvalSet) -> pd.DataFrame:
        rng = np.random.default_rng([seed, 0x9A0, *stream])
        bodies = scheme.bodies(pool, n, recipe(cfg, max_tokens, s.n_units), rng, tokens, s.variant)
        ids = {i for body in bodies for piece in body for i in piece.ids} | set(prefix_ids[s.prefix].ids)
        if scheme.anchor:
            ids |= set(tokens.after(scheme.anchor))
        tokens.strings.update(token_strings(tokenizer, ids - tokens.strings.keys()))
        df = PromptBuilder(scheme, tokens).table(prefix_ids[s.prefix].ids, bodies, s.n_units)
        df["prefix_id"] = np.int32(s.prefix_id)
        return df

    vals = []
    for i, s in enumerate(eval_sets(cfg, len(prefix_ids))):
        val = draw(pools["val"], cfg.n_val, (1,), s)
        val["prompt_id"] += i * cfg.n_val
        vals.append(val)
    shares = np.diff(np.linspace(0, cfg.n_train, len(cfg.train_prefixes) + 2).round().astype(int))
    trains, start = [], 0
    for k, n in enumerate(shares):
        part = draw(pools["train"], int(n), (0,) if k == 0 else (0, k), EvalSet(k, cfg.n_units))
        part["prompt_id"] += start
        start += int(n)
        trains.append(part)
    train = pd.concat(trains, ignore_index=True)
    seen = WordPool.from_table(heldout_pool(train_words, train, max_tokens, cfg.n_train), max_tokens)
    heldout = draw(seen, cfg.n_heldout, (2,), EvalSet(0, cfg.n_units))
    return {"train": train, "val": pd.concat(vals, ignore_index=True), "heldout": heldout}


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
