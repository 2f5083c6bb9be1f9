"""Labels of any text by every scheme's rule: where probes trained on synthetic prompts are tested on real text.

``text_table`` tokenizes a text (BOS first when the pipeline's prompts have one), keeps
each token's characters, and asks each scheme (``Scheme.from_text``) for its label,
probed tokens and nearer confound: the word's index in its sentence, the sentence's in
its paragraph, the line's, the characters since the newline (lists are rare in prose:
``item_in_list`` labels none).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from emergent_pos.config import ParamError
from emergent_pos.dataset.prompts import token_strings
from emergent_pos.dataset.schemes import SCHEMES


def read_text(path: str | Path, key: str) -> str:
    """A text file, or a one-line error naming ``key``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ParamError(key, str(path), f"cannot read it ({type(err).__name__}: {err})") from err
    if not text.strip():
        raise ParamError(key, str(path), "the file holds no text")
    return text


def text_table(text: str, tokenizer, bos: bool, n_ctx: int | None = None) -> pd.DataFrame:
    """One row per token of ``text``: its id, string, characters, and every scheme's
    ``label_<scheme>``, ``end_<scheme>`` (a probed token) and ``confound_<scheme>``.
    ``n_ctx`` cuts the text to the model's context."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, spans = list(enc["input_ids"]), [tuple(s) for s in enc["offset_mapping"]]
    limit = None if n_ctx is None else n_ctx - int(bos)
    ids, spans = ids[:limit], spans[:limit]
    strings = token_strings(tokenizer, set(ids))
    columns: dict[str, list | np.ndarray] = {
        "position": np.arange(len(ids)) + int(bos),
        "token_id": ids,
        "token": [strings[i] for i in ids],
        "start": [a for a, _ in spans],
        "end": [b for _, b in spans],
    }
    for name, scheme in SCHEMES.items():
        labels = scheme.from_text(text, spans)
        if labels is None:
            labels_of = (np.full(len(ids), -1), np.zeros(len(ids), dtype=bool), np.full(len(ids), -1))
        else:
            labels_of = (labels.label, labels.unit_end, labels.confound)
        for prefix, values in zip(("label", "end", "confound"), labels_of, strict=True):
            columns[f"{prefix}_{name}"] = values
    table = pd.DataFrame(columns)
    if bos:
        first = {c: -1 for c in table.columns if c.startswith(("label_", "confound_"))}
        row = {"position": 0, "token_id": tokenizer.bos_token_id, "token": "", "start": 0, "end": 0, **first}
        row |= {c: False for c in table.columns if c.startswith("end_")}
        table = pd.concat([pd.DataFrame([row]), table], ignore_index=True)
    return table
