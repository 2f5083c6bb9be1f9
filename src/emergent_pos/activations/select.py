"""Which prompt tokens the activations stage stores (``activations.tokens``).

The forward pass always runs every token (a unit's activations depend on all before
it); only what is written differs. ``all`` stores every token, ``units`` the tokens of
the counted units (not the prefix, the anchor or BOS), ``bounds`` the first and last
token of each unit, ``ends`` the last token of each unit only. The choice is the
activations section's own, so no probe param invalidates stored activations; a probe
that reads a token the files lack is refused in one line. For a large model the smaller
sets are what make all-layer activations fit a disk (docs/scaling.md).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emergent_pos.dataset.labels import token_mask


def rows_to_store(table: pd.DataFrame, tokens: str) -> np.ndarray:
    """Ascending prompts-table rows to write, for ``activations.tokens`` = ``tokens``."""
    if tokens == "all":
        return np.arange(len(table))
    if tokens == "units":
        return np.flatnonzero(token_mask(table, "all"))
    if tokens == "bounds":
        return np.flatnonzero(token_mask(table, "first") | token_mask(table, "last"))
    return np.flatnonzero(token_mask(table, "last"))
