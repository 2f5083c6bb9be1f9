"""``item_in_list``: which item of the list is this token in?

After the prefix, a colon opens the list, then ``n_units`` items of a number of words
uniform in ``prompts.unit_words``, each closed by a comma:
``"...\\nWhen: river table, shoe, light paper house,"``. Every item ends the same way, so
nothing but the count tells the items apart; its nearer confound is the number of
tokens since the list began.
"""

from __future__ import annotations

import numpy as np

from emergent_pos.dataset.schemes.base import (
    Decision,
    Piece,
    PromptArrays,
    Recipe,
    Scheme,
    TokenText,
    WordPool,
    separated_units,
)


class ItemInList(Scheme):
    name = "item_in_list"
    unit = "item"
    anchor = ":"
    rule = "the number of commas between the colon that opens the list and the token; an item's own comma belongs to it"
    confound = "tokens since the list's colon"
    decision = Decision(".", at="before_unit_end")  # the last item is closed by "." not ","

    def bodies(
        self,
        words: WordPool,
        n_prompts: int,
        recipe: Recipe,
        rng: np.random.Generator,
        tokens: TokenText,
        variant: str = "",
    ) -> list[list[Piece]]:
        return separated_units(words, n_prompts, recipe, rng, tokens.after(","))

    def confounds(self, a: PromptArrays) -> np.ndarray:
        return np.where(a.in_body & (a.unit >= 0), a.position - a.anchor, -1)


SCHEME = ItemInList()
