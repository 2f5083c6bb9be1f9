"""Reference schemes, one module each: ``prompts.scheme`` picks one by name.

A new scheme is one module here with a ``SCHEME`` instance of a ``base.Scheme`` subclass,
added to ``SCHEMES``; nothing outside this folder knows which scheme it reads.
"""

from __future__ import annotations

from emergent_pos.dataset.schemes import (
    char_in_line,
    item_in_list,
    line_in_text,
    sentence_in_paragraph,
    word_in_sentence,
)
from emergent_pos.dataset.schemes.base import Scheme

SCHEMES: dict[str, Scheme] = {
    m.SCHEME.name: m.SCHEME for m in (word_in_sentence, sentence_in_paragraph, item_in_list, line_in_text, char_in_line)
}
