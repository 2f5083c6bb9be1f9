"""``line_in_text``: which line of the text is this token on?

After the prefix, a newline, then ``n_units`` lines of a number of words uniform in
``prompts.unit_words``, each ended by a newline; a line's first word has no leading
space, as at any line start: ``"...\\nWhen\\nriver table\\nshoe\\nlight paper house\\n"``.
Its nearer confound is the number of words since the text began.
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
    separated_units,
    words_of,
    words_so_far,
)


class LineInText(Scheme):
    name = "line_in_text"
    unit = "line"
    anchor = "\n"
    rule = (
        "the number of newlines between the newline after the prefix (the anchor) and the token; a line's own "
        "newline belongs to it"
    )
    confound = "word index in the text (words since the anchor)"
    decision = Decision("\n")  # a blank line after the last line

    def bodies(
        self,
        words: WordPool,
        n_prompts: int,
        recipe: Recipe,
        rng: np.random.Generator,
        tokens: TokenText,
        variant: str = "",
    ) -> list[list[Piece]]:
        return separated_units(words, n_prompts, recipe, rng, tokens.after("\n"), line_starts=True)

    def confounds(self, a: PromptArrays) -> np.ndarray:
        return words_so_far(a)

    def from_text(self, text: str, spans: list[tuple[int, int]]) -> TextLabels:
        """A token's label is the number of newlines before it in the text; a line's own newline
        belongs to it."""
        word, _, _ = words_of(text, spans)
        label = np.array([text.count("\n", 0, a) if b > a else -1 for a, b in spans])
        ends = np.array(["\n" in text[a:b] for a, b in spans])
        words_so_far = np.maximum.accumulate(np.where(word >= 0, word, -1))
        return TextLabels(label, ends, np.where(label >= 0, words_so_far, -1))


SCHEME = LineInText()
