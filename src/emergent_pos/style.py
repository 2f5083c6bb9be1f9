"""Figure conventions shared by every phase: the widest figure and the colour of each unit index.

They live here, not in ``report``, so that the mechanism figures (``analysis``) and the token
pages use the same colours without depending on the report phase.
"""

from __future__ import annotations

import seaborn as sns

WIDTH_IN = 12.5
"""Widest figure in inches: 1,375 px at the 110 dpi figures are saved with (``io.files.save_figure``),
inside a 1,400-px window."""


def index_colours(n: int) -> list:
    """One colour per unit index (0, 1, ...), the same in every figure and page."""
    return sns.color_palette("tab10" if n <= 10 else "husl", n)


def visible(token: str) -> str:
    """A token as figures and pages label it: spaces as ``·``, newlines as ``⏎``, tabs as ``⇥``, nothing as ``∅``."""
    return token.replace(" ", "·").replace("\n", "⏎").replace("\t", "⇥") or "∅"
