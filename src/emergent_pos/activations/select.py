"""Which prompt tokens the activations stage stores (``activations.tokens``).

The forward pass always runs every token (a word's activations depend on all before
it); only what is written differs. ``all`` stores every token, ``words`` only tokens
inside the word list (not the prefix or BOS), ``probed`` only the tokens the probes read
(``probe.token``: the last, first or every token of each word). For a large model the
smaller sets are what make all-layer activations fit a disk (README, Scaling up).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emergent_pos.dataset.labels import Points, TokenChoice


def rows_to_store(table: pd.DataFrame, tokens: str, probe_token: TokenChoice) -> np.ndarray:
    """Ascending prompts-table rows to write, for ``activations.tokens`` = ``tokens``."""
    if tokens == "all":
        return np.arange(len(table))
    return Points.select(table, "all" if tokens == "words" else probe_token).rows


def selection_label(tokens: str, probe_token: TokenChoice) -> str:
    """What the hook files record as their ``tokens``: ``all``, ``words`` or ``probed:last``."""
    return f"probed:{probe_token}" if tokens == "probed" else tokens
