"""``sentence_in_paragraph``: which sentence of the paragraph is this token in?

After the prefix, ``n_units`` sentences, each of a number of words uniform in
``prompts.unit_words`` (drawn like the seed's words) and a full stop:
``"...\\nWhen river table. shoe. light paper house."``. Sentences of varied length make
the sentence index differ from the word count, which is its nearer confound.
"""

from __future__ import annotations

import re

import numpy as np

from emergent_pos.dataset.schemes.base import (
    SENTENCE_END,
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


class SentenceInParagraph(Scheme):
    name = "sentence_in_paragraph"
    unit = "sentence"
    anchor = ""
    rule = (
        "the number of full stops between the prefix's last word (the anchor) and the token; a sentence's "
        "own full stop belongs to it"
    )
    confound = "word index in the paragraph (words since the anchor)"
    decision = Decision("\n")  # the paragraph ends after its last full stop

    def bodies(
        self,
        words: WordPool,
        n_prompts: int,
        recipe: Recipe,
        rng: np.random.Generator,
        tokens: TokenText,
        variant: str = "",
    ) -> list[list[Piece]]:
        return separated_units(words, n_prompts, recipe, rng, tokens.after("."))

    def confounds(self, a: PromptArrays) -> np.ndarray:
        return words_so_far(a)

    def from_text(self, text: str, spans: list[tuple[int, int]]) -> TextLabels:
        """Paragraphs are separated by blank lines; a token's label is the number of sentence ends
        (``.``, ``!``, ``?``) before it in its paragraph, so a sentence's own full stop belongs to it."""
        word, _, _ = words_of(text, spans)
        breaks = [m.end() for m in re.finditer(r"\n\s*\n", text)]
        stops = [m.start() for m in SENTENCE_END.finditer(text)]
        label, ends, confound = np.full(len(spans), -1), np.zeros(len(spans), dtype=bool), np.full(len(spans), -1)
        for t, (a, b) in enumerate(spans):
            if word[t] < 0:
                continue
            start = max([0, *(x for x in breaks if x <= a)])
            label[t] = sum(start <= s < a for s in stops)
            ends[t] = any(a <= s < b for s in stops)
            confound[t] = word[t] - int(word[np.searchsorted([x[0] for x in spans], start)])
        return TextLabels(label, ends, confound)


SCHEME = SentenceInParagraph()
