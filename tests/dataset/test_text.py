"""Labels of real text (what `tokens.text_file` scores the probes on) against a count made by hand."""

from __future__ import annotations

import re
from pathlib import Path

from transformers import AutoTokenizer

from emergent_pos.dataset.text import text_table

TEXT = "When the cat sat. Then a dog ran fast.\nWhen birds sing\nNow it ends here.\n\nOnce more."


def word_at(char: int) -> str:
    """The word (a run of non-space characters) holding character ``char`` of TEXT."""
    return next(m.group() for m in re.finditer(r"\S+", TEXT) if m.start() <= char < m.end())


def test_real_text_labels_are_the_hand_count(tiny_model_dir: Path) -> None:
    table = text_table(TEXT, AutoTokenizer.from_pretrained(tiny_model_dir), bos=True)
    assert table.position.tolist() == list(range(len(table))) and table.label_word_in_sentence[0] == -1  # BOS
    body = table.iloc[1:]

    def probed(scheme: str) -> list[tuple[str, int]]:
        rows = body[body[f"end_{scheme}"]]
        return [(TEXT[a:b], int(y)) for a, b, y in zip(rows.start, rows.end, rows[f"label_{scheme}"], strict=True)]

    # words: each sentence's first word is its anchor; "sing" ends no sentence, so "Now" goes on counting
    words = body[body.end_word_in_sentence]
    got = [(word_at(b - 1), int(y)) for b, y in zip(words.end, words.label_word_in_sentence, strict=True)]
    assert got == [("the", 0), ("cat", 1), ("sat.", 2), ("a", 0), ("dog", 1), ("ran", 2), ("fast.", 3)] + [
        ("birds", 0), ("sing", 1), ("Now", 2), ("it", 3), ("ends", 4), ("here.", 5), ("more.", 0)
    ]  # fmt: skip
    # sentences: full stops before the token within its paragraph (a blank line starts one)
    assert [y for t, y in probed("sentence_in_paragraph")] == [0, 1, 2, 0]
    assert all("." in t for t, _ in probed("sentence_in_paragraph"))
    # lines: newlines before the token; a line's own newline belongs to it
    lines = probed("line_in_text")
    assert [y for _, y in lines[:2]] == [0, 1] and all("\n" in t for t, _ in lines)
    once = body[body.start == TEXT.index("Once")]
    assert once.label_line_in_text.iloc[0] == 4
    # characters since the newline, at the end of each token
    for word, count in (("fast.", 38), ("sing", 15), ("here.", 17), ("more.", 10)):
        end = TEXT.index(word) + len(word)
        assert body[body.end == end].label_char_in_line.iloc[0] == count, word
    assert (body.label_item_in_list == -1).all()  # prose holds no list to count
