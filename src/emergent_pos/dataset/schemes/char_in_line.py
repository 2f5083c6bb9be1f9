"""``char_in_line``: how many characters since the last newline? (line breaking, Gurnee et al. 2025)

After the prefix, a newline, then running words wrapped at a width drawn per prompt
from ``prompts.line_width`` (greedy, as ``textwrap`` wraps: a word goes on the line if
the line stays within the width, else a newline and the word without its space):
``n_units`` full lines. The label is an ordinal count, so the probes stage fits a ridge
regression (scored by out-of-sample R²) beside a classifier over counts binned by
``probe.char_bin``. Its nearer confound is the number of tokens since the newline.
"""

from __future__ import annotations

import numpy as np

from emergent_pos.dataset.schemes.base import (
    Decision,
    Piece,
    PromptArrays,
    Recipe,
    Scheme,
    TextLabels,
    TokenText,
    WordPool,
    since_last,
    words_of,
)


class CharInLine(Scheme):
    name = "char_in_line"
    unit = "character"
    anchor = "\n"
    rule = (
        "the number of characters from the last newline to the end of the token, the token's own included "
        "(a newline token is on no line: -1)"
    )
    confound = "tokens since the last newline"
    decision = Decision("\n", append=False)  # the line break at the width, in the text itself
    ordinal = True
    countdown = False  # the width changes per prompt: "characters left" has no fixed end to count down to

    def bodies(
        self,
        words: WordPool,
        n_prompts: int,
        recipe: Recipe,
        rng: np.random.Generator,
        tokens: TokenText,
        variant: str = "",
    ) -> list[list[Piece]]:
        newline = tokens.after("\n")
        lo, hi = recipe.line_width
        out = []
        for _ in range(n_prompts):
            width = int(rng.integers(lo, hi + 1))
            body: list[Piece] = []
            line, used, word = 0, 0, 0  # a piece's unit is its word's index: the units read are words
            while line < recipe.n_units:
                row = words.draw(rng)
                if used and used + 1 + len(row.word) <= width:
                    body.append(Piece(list(row.token_ids), word, row.word, starts_unit=True, ends_unit=True))
                    used += 1 + len(row.word)
                    word += 1
                    continue
                if used:  # the word does not fit: the line ends here
                    body.append(Piece(newline, -1))
                    line += 1
                    if line == recipe.n_units:
                        break
                body.append(Piece(list(row.line_start_ids), word, row.word, starts_unit=True, ends_unit=True))
                used = len(row.word)
                word += 1
            out.append(body)
        return out

    def mean_tokens(self, recipe: Recipe) -> float:
        return recipe.n_units * (sum(recipe.line_width) / 2 / 3 + 1)  # about 3 characters a token, and a newline

    def labels(self, a: PromptArrays) -> np.ndarray:
        """Characters since the last newline at the end of each token (its own characters included)."""
        out = np.full(len(a.text), -1)
        column = 0
        for i, text in enumerate(a.text):
            if not a.in_body[i]:
                continue
            if "\n" in text:
                column = len(text) - text.rindex("\n") - 1
                continue  # a newline token is on no line
            column += len(text)
            out[i] = column
        return out

    def anchors(self, a: PromptArrays) -> np.ndarray:
        """Each token counts from the last newline (the anchor's or a wrapped line's)."""
        newline = np.array(["\n" in t for t in a.text])
        last = np.maximum.accumulate(np.where(newline | (a.position == a.anchor), a.position, -1))
        return np.where(a.in_body & ~newline, last, -1)

    def confounds(self, a: PromptArrays) -> np.ndarray:
        newline = np.array(["\n" in t for t in a.text])
        return np.where(newline, -1, since_last(a, newline))

    def from_text(self, text: str, spans: list[tuple[int, int]]) -> TextLabels:
        """Characters from the last newline to the token's end (a newline token is on no line)."""
        _, ends, _ = words_of(text, spans)
        newline = np.array(["\n" in text[a:b] for a, b in spans])
        label = np.array(
            [-1 if nl else b - text.rfind("\n", 0, b) - 1 for (a, b), nl in zip(spans, newline, strict=True)]
        )
        last = np.maximum.accumulate(np.where(newline, np.arange(len(spans)), -1))
        confound = np.where(newline, -1, np.arange(len(spans)) - last)
        return TextLabels(label, ends & ~newline, confound)


SCHEME = CharInLine()
