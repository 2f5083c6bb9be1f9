"""``word_in_sentence``: which word of the sentence is this token in? (the seed's scheme, the default)

The seed's recipe: after the prefix (ending with the anchor ``"\\nWhen"``), ``n_units``
words, each with a leading space; a word's token length is uniform in
``1..dictionary.max_tokens``, then the word is uniform among words of that length. The
draws are made for all prompts at once, in the order the seed's prompts always used, so
the same params give the same prompts.

Variant ``paragraph`` (a validation set of its own): two sentences, the second after
``". When"``; the second's words are labelled from 0 again, so the probes' accuracy there
says whether the count restarts at each anchor (full stop + capital).
"""

from __future__ import annotations

import numpy as np

from emergent_pos.dataset.schemes.base import (
    SENTENCE_END,
    Piece,
    PromptArrays,
    Recipe,
    Scheme,
    TextLabels,
    TokenText,
    WordPool,
    words_of,
)


class WordInSentence(Scheme):
    name = "word_in_sentence"
    unit = "word"
    anchor = ""
    rule = (
        "the number of words (each begins with a space) between the prefix's last word, the anchor "
        "(\"When\" in the seed's prefix), and the token's own word"
    )
    confound = "tokens since the anchor"
    variants = {"paragraph": "the second sentence of two, after '. When': does the count restart at the anchor?"}

    def bodies(
        self,
        words: WordPool,
        n_prompts: int,
        recipe: Recipe,
        rng: np.random.Generator,
        tokens: TokenText,
        variant: str = "",
    ) -> list[list[Piece]]:
        n_words = recipe.n_units * (2 if variant == "paragraph" else 1)
        lengths = rng.integers(1, recipe.max_tokens + 1, size=(n_prompts, n_words))
        picks = np.empty_like(lengths)
        for n in range(1, recipe.max_tokens + 1):
            mask = lengths == n
            picks[mask] = rng.integers(0, len(words.buckets[n - 1]), size=int(mask.sum()))
        restart = tokens.after(". When") if variant == "paragraph" else []
        out = []
        for p in range(n_prompts):
            body = []
            for w in range(n_words):
                if w == recipe.n_units:  # the paragraph's second sentence
                    body.append(Piece(restart, -1, anchor=True))
                row = words.buckets[lengths[p, w] - 1].iloc[picks[p, w]]
                label = w % recipe.n_units
                body.append(Piece(list(row.token_ids), w, row.word, starts_unit=True, ends_unit=True, label=label))
            out.append(body)
        return out

    def mean_tokens(self, recipe: Recipe) -> float:
        return recipe.n_units * (recipe.max_tokens + 1) / 2

    def confounds(self, a: PromptArrays) -> np.ndarray:
        return np.where(a.in_body & (a.unit >= 0), a.position - a.anchor_at, -1)

    def from_text(self, text: str, spans: list[tuple[int, int]]) -> TextLabels:
        """A sentence starts at the text's start or after ``.``/``!``/``?`` and a space; its first
        word is the anchor (as ``When`` is in the prompts) and each later word is numbered from 0."""
        word, ends, words = words_of(text, spans)
        first = np.zeros(len(words), dtype=int)  # each word's sentence's first word
        for k in range(1, len(words)):
            first[k] = k if SENTENCE_END.search(words[k - 1].group()) else first[k - 1]
        in_word = word >= 0
        label = np.where(in_word, word - first[np.maximum(word, 0)] - 1, -1)
        label = np.where(label >= 0, label, -1)
        last_token = {int(k): t for t, k in enumerate(word) if k >= 0}  # a word's last token
        anchor = np.array([last_token.get(int(first[k]), -1) if k >= 0 else -1 for k in word])
        confound = np.where(label >= 0, np.arange(len(spans)) - anchor, -1)
        return TextLabels(label, ends & (label >= 0), confound)


SCHEME = WordInSentence()
