"""What every reference scheme is, and how its prompts become one row per token.

A scheme (one module each in this folder) says which unit it counts and from which
anchor, builds the body of each prompt from the word list as a list of ``Piece``s (a
word, a separator, a newline: token ids whose unit is known by construction), and names
its nearer confound. ``PromptBuilder`` turns ``prefix + anchor + body`` into the
prompts table (``COLUMNS``); the probes, reports and mechanism stages read only those
columns, never a scheme's own code.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

COLUMNS = [
    "prompt_id",
    "prefix_id",
    "position",
    "token_id",
    "token",
    "scheme",
    "label",
    "unit",
    "unit_start",
    "unit_end",
    "anchor",
    "n_units",
    "confound",
    "word",
    "word_type",
    "word_index",
    "token_in_word",
    "word_n_tokens",
    "is_word_start",
    "is_word_end",
]
"""One row per token, sorted by prompt then position (row number = activation row):

* ``label``: what the probes predict (the unit's index; characters since the newline for
  ``char_in_line``), ``-1`` where the scheme defines none (prefix, anchor, BOS);
* ``unit``: which unit of the body the token is in, counted from 0 (equal to ``label``
  except for ``char_in_line``, whose units are its words); ``unit_start``/``unit_end``:
  the first and last token of a unit (what ``probe.token: first | last`` reads; ``all``
  reads every labelled token); ``anchor``: the position counting starts from for this
  token (the last token of prefix + anchor; ``char_in_line``: the last newline);
* ``n_units``: units in the prompt; ``confound``: the scheme's nearer confound (``-1``
  where undefined);
* ``word``, ``word_index`` (index of the word in the body), ``token_in_word``,
  ``word_n_tokens``, ``is_word_start``, ``is_word_end``: the words the body is made of, in
  every scheme; ``word_type``: the word a memorising probe could key on (a separator's is
  the word before it).
"""


@dataclass(frozen=True)
class Piece:
    """A run of token ids inside a prompt body whose unit is known by construction."""

    ids: Sequence[int]
    unit: int  # which unit of the body every token of the piece is in (-1: outside any unit)
    word: str = ""  # the dictionary word this piece spells ("" for separators, newlines)
    starts_unit: bool = False
    ends_unit: bool = False
    label: int | None = None  # the label of its tokens, when it is not the unit (a count restarted)
    anchor: bool = False  # counting starts again after this piece (a sentence's ". When")


@dataclass(frozen=True)
class WordPool:
    """One split's words by token length, as they are spelt mid-line (``" word"``) and at a line start."""

    buckets: list[pd.DataFrame]  # buckets[n - 1]: words of n tokens (columns word, token_ids, line_start_ids)

    @classmethod
    def from_table(cls, words: pd.DataFrame, max_tokens: int) -> WordPool:
        return cls([words[words.n_tokens == n].reset_index(drop=True) for n in range(1, max_tokens + 1)])

    def draw(self, rng: np.random.Generator) -> pd.Series:
        """A word whose token length is uniform in 1..max_tokens, then uniform within that length."""
        bucket = self.buckets[int(rng.integers(0, len(self.buckets)))]
        return bucket.iloc[int(rng.integers(0, len(bucket)))]


@dataclass(frozen=True)
class TextLabels:
    """A scheme's labels of running text (any text, not a prompt it built), one value per token."""

    label: np.ndarray  # -1 where the scheme defines none
    unit_end: np.ndarray  # the token ends a unit: what the probes read
    confound: np.ndarray  # the nearer confound (-1 where undefined)


@dataclass(frozen=True)
class Decision:
    """Where the count decides the next token, for the interventions' stop-decision loss.

    ``end``: the text whose first token ends the count (the full stop after the announced
    number of words, the newline that ends a paragraph or a list of lines, the list's
    closing full stop, the line break at the width). ``at``: the tokens where the
    decision falls: each unit's last token (``unit_end``), the token before it
    (``before_unit_end``: an item's last word, whose next token is ``,`` or ``.``). With
    ``append`` the end follows the last unit (replacing its separator when ``at`` is
    ``before_unit_end``); without, the prompts hold the ends already (line breaks).
    """

    end: str
    at: str = "unit_end"
    append: bool = True


@dataclass(frozen=True)
class Recipe:
    """The prompt params a scheme reads (``prompts`` section)."""

    n_units: int
    unit_words: tuple[int, int]  # words per sentence, item or line (uniform, inclusive)
    line_width: tuple[int, int]  # characters per line of char_in_line (uniform, inclusive)
    max_tokens: int


class Scheme(ABC):
    """A reference scheme: the unit it counts, its anchor, its prompt recipe and its confound."""

    name: ClassVar[str]
    unit: ClassVar[str]
    anchor: ClassVar[str]
    """Text appended to the prefix: the last token of prefix + anchor is where counting starts
    (``""``: the prefix's own last token, ``"\\nWhen"`` for the seed's prefix)."""
    rule: ClassVar[str]
    """One sentence: how a reader recounts a token's label from the decoded text."""
    confound: ClassVar[str]
    """What the ``confound`` column counts: the scheme's nearer confound, beside absolute position."""
    ordinal: ClassVar[bool] = False
    """The label is a count to regress (and bin for the classifier), not an index."""
    countdown: ClassVar[bool] = True
    """Prompts of other unit counts (``prompts.eval_n_units``) tell a count from a countdown."""
    decision: ClassVar[Decision] = Decision(".")
    """Where the count decides the next token (``Decision``)."""

    variants: ClassVar[dict[str, str]] = {}
    """Extra validation sets of prefix 0 (name -> what they test), built by ``bodies(variant=name)``."""

    def anchors(self, a: PromptArrays) -> np.ndarray:
        """The position each token counts from: the prompt's anchor, or the last anchor piece (-1 outside units)."""
        return np.where(a.in_body & (a.unit >= 0), a.anchor_at, -1)

    @abstractmethod
    def bodies(
        self,
        words: WordPool,
        n_prompts: int,
        recipe: Recipe,
        rng: np.random.Generator,
        tokens: TokenText,
        variant: str = "",
    ) -> list[list[Piece]]:
        """The body of each prompt (after prefix and anchor); ``variant`` one of ``variants``."""

    def from_text(self, text: str, spans: list[tuple[int, int]]) -> TextLabels | None:
        """Labels of any text by the scheme's rule (``spans``: each token's characters in ``text``);
        None where running text defines none."""
        return None

    def mean_tokens(self, recipe: Recipe) -> float:
        """Expected tokens of a body: what the memory estimate of the prompt tables reads."""
        mean_word = (recipe.max_tokens + 1) / 2
        return recipe.n_units * ((sum(recipe.unit_words) / 2) * mean_word + 1)

    def confounds(self, table: PromptArrays) -> np.ndarray:
        """The nearer confound of each token of one prompt (``-1`` outside the body)."""
        raise NotImplementedError

    def labels(self, table: PromptArrays) -> np.ndarray:
        """Each token's label; by default the one its piece was built with (its unit unless set)."""
        return table.label


def separated_units(
    words: WordPool,
    n_prompts: int,
    recipe: Recipe,
    rng: np.random.Generator,
    separator: list[int],
    line_starts: bool = False,
) -> list[list[Piece]]:
    """Bodies of ``n_units`` units of ``recipe.unit_words`` words, each closed by ``separator``
    (a full stop, a comma, a newline); ``line_starts``: a unit's first word without its space."""
    lo, hi = recipe.unit_words
    out = []
    for _ in range(n_prompts):
        body = []
        for k in range(recipe.n_units):
            for j in range(int(rng.integers(lo, hi + 1))):
                row = words.draw(rng)
                ids = row.line_start_ids if line_starts and j == 0 else row.token_ids
                body.append(Piece(list(ids), k, row.word, starts_unit=j == 0))
            body.append(Piece(separator, k, ends_unit=True))
        out.append(body)
    return out


CONTEXT = "When"
"""Text a piece is tokenized after, so that it splits as it does inside a prompt (a ``"."``
after a word, not at a sequence start where SentencePiece would prepend ``"▁"``)."""


@dataclass(frozen=True)
class TokenText:
    """Token ids of the fixed texts a recipe uses, and the readable string of every token."""

    tokenizer: Any
    strings: dict[int, str] = field(default_factory=dict)

    def ids(self, text: str) -> list[int]:
        """``text`` alone (a prefix or an anchor: it starts the sequence or follows the prefix)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def after(self, text: str) -> list[int]:
        """``text`` as it tokenizes after a word (separators: ``"."``, ``","``, ``"\n"``)."""
        ctx = self.ids(CONTEXT)
        full = self.ids(CONTEXT + text)
        if full[: len(ctx)] != ctx:
            raise ValueError(f"the tokenizer merges {text!r} into the word before it; cannot align units")
        return full[len(ctx) :]


@dataclass(frozen=True)
class PromptArrays:
    """One prompt's per-token arrays while its table is built (what labels and confounds read)."""

    position: np.ndarray
    unit: np.ndarray  # the piece's unit, -1 outside
    label: np.ndarray  # the piece's label (its unit unless the piece says otherwise), -1 outside
    in_body: np.ndarray  # after the anchor
    anchor: int  # position of the anchor's last token
    anchor_at: np.ndarray  # per token: the last anchor before it (the prompt's, or an anchor piece's last token)
    word_index: np.ndarray  # -1 outside words
    is_word_start: np.ndarray
    text: list[str]  # each token's string


def words_so_far(a: PromptArrays) -> np.ndarray:
    """Words started in the body at or before each token, minus one: the word index of a word's
    tokens, and of the word before for a separator (``-1`` before the first word and outside)."""
    count = np.cumsum(a.is_word_start & a.in_body) - 1
    return np.where(a.in_body, count, -1)


def since_last(a: PromptArrays, mark: np.ndarray) -> np.ndarray:
    """Tokens since the last token where ``mark`` holds, at or after the anchor (the anchor counts as one)."""
    idx = np.where(mark | (a.position == a.anchor), a.position, -1)
    last = np.maximum.accumulate(idx)
    return np.where(a.in_body, a.position - last, -1)


class PromptBuilder:
    """``prefix + anchor + body`` -> the prompts table, one row per token (``COLUMNS``)."""

    def __init__(self, scheme: Scheme, tokens: TokenText) -> None:
        self.scheme = scheme
        self.tokens = tokens

    def table(self, prefix: Sequence[int], bodies: list[list[Piece]], n_units: int) -> pd.DataFrame:
        head = [*prefix, *self.tokens.after(self.scheme.anchor)] if self.scheme.anchor else list(prefix)
        cols: dict[str, list] = {c: [] for c in COLUMNS if c not in ("prefix_id", "scheme", "n_units", "token")}
        for p, body in enumerate(bodies):
            ids = list(head)
            unit, label, anchor_at = [-1] * len(head), [-1] * len(head), [-1] * len(head)
            current = len(head) - 1
            starts, ends = [False] * len(head), [False] * len(head)
            word, wtype, windex = [""] * len(head), [""] * len(head), [-1] * len(head)
            tin, wn, wstart, wend = [-1] * len(head), [0] * len(head), [False] * len(head), [False] * len(head)
            k, last_word = -1, ""
            for piece in body:
                n = len(piece.ids)
                ids += piece.ids
                unit += [piece.unit] * n
                label += [piece.unit if piece.label is None else piece.label] * n
                anchor_at += [-1 if piece.anchor else current] * n
                if piece.anchor:
                    current = len(ids) - 1
                starts += [piece.starts_unit] + [False] * (n - 1)
                ends += [False] * (n - 1) + [piece.ends_unit]
                if piece.word:
                    k += 1
                    last_word = piece.word
                    windex += [k] * n
                    tin += list(range(n))
                    wn += [n] * n
                    wstart += [True] + [False] * (n - 1)
                    wend += [False] * (n - 1) + [True]
                else:
                    windex += [-1] * n
                    tin += [-1] * n
                    wn += [0] * n
                    wstart += [False] * n
                    wend += [False] * n
                word += [piece.word] * n
                wtype += [piece.word or last_word] * n
            position = np.arange(len(ids))
            arrays = PromptArrays(
                position=position,
                unit=np.array(unit),
                label=np.array(label),
                in_body=position >= len(head),
                anchor=len(head) - 1,
                anchor_at=np.array(anchor_at),
                word_index=np.array(windex),
                is_word_start=np.array(wstart),
                text=[self.tokens.strings[i] for i in ids],
            )
            cols["prompt_id"] += [p] * len(ids)
            cols["position"] += list(position)
            cols["token_id"] += ids
            cols["label"] += list(self.scheme.labels(arrays))
            cols["unit"] += unit
            cols["unit_start"] += starts
            cols["unit_end"] += ends
            cols["anchor"] += list(self.scheme.anchors(arrays))
            cols["confound"] += list(self.scheme.confounds(arrays))
            cols["word"] += word
            cols["word_type"] += wtype
            cols["word_index"] += windex
            cols["token_in_word"] += tin
            cols["word_n_tokens"] += wn
            cols["is_word_start"] += wstart
            cols["is_word_end"] += wend
        df = pd.DataFrame(cols)
        df["token"] = df.token_id.map(self.tokens.strings)
        df["scheme"] = self.scheme.name
        df["n_units"] = n_units
        df["prefix_id"] = 0
        ints = ("prompt_id", "prefix_id", "position", "token_id", "label", "unit", "anchor", "n_units", "confound")
        ints += ("word_index",)
        for c in (*ints, "token_in_word", "word_n_tokens"):
            df[c] = df[c].astype(np.int32)
        return df[COLUMNS]


WORD = re.compile(r"\S+")
SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def token_of(spans: list[tuple[int, int]], n_chars: int) -> np.ndarray:
    """For each character of the text, the token whose span holds it (-1 for none: a special token)."""
    owner = np.full(n_chars, -1)
    for t, (a, b) in enumerate(spans):
        owner[a:b] = t
    return owner


def words_of(text: str, spans: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, list[re.Match]]:
    """Per token: the index of the word (a run of non-space characters) its last character is in
    (-1 for whitespace-only tokens), and whether the token ends that word; and the words."""
    words = list(WORD.finditer(text))
    word_at = np.full(len(text), -1)
    for k, w in enumerate(words):
        word_at[w.start() : w.end()] = k
    index, ends = np.full(len(spans), -1), np.zeros(len(spans), dtype=bool)
    for t, (a, b) in enumerate(spans):
        inside = word_at[a:b][word_at[a:b] >= 0]
        if len(inside):
            index[t] = inside[-1]
            ends[t] = b >= words[inside[-1]].end()
    return index, ends, words
