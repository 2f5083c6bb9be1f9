"""Every scheme's labels against a count made by hand from the decoded text (not by the scheme's code).

Each token's end is located in the decoded prompt by decoding the ids up to it; the
label is then recounted from the text by README's one-sentence rule of the scheme.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from emergent_pos.dataset.config import DictionaryConfig, PromptsConfig
from emergent_pos.dataset.dictionary import build_dictionary
from emergent_pos.dataset.prompts import PrefixIds, build_prompts, prompt_token_ids
from emergent_pos.dataset.schemes import SCHEMES
from emergent_pos.dataset.words import source_words


def hand_count(scheme: str, body: str, start: int, end: int) -> int:
    """The label of the token spanning ``body[start:end]`` by the scheme's rule, counted on the text."""
    before, upto = body[:start], body[:end]
    if scheme == "word_in_sentence":  # words after the anchor: each begins with a space
        return upto.count(" ") - 1
    if scheme == "sentence_in_paragraph":  # full stops before the token; its own belongs to it
        return before.count(".")
    if scheme == "item_in_list":  # commas since the colon (the body starts after it)
        return before.count(",")
    if scheme == "line_in_text":  # newlines since the anchor newline (the body starts after it)
        return before.count("\n")
    # char_in_line: characters from the last newline to the token's end; a newline token is on no line
    if "\n" in body[start:end]:
        return -1
    return len(upto) - (upto.rfind("\n") + 1)


@pytest.fixture(scope="module")
def dictionary(tiny_model_dir: Path) -> tuple:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    words, _ = source_words("wordfreq", 2000)
    return tok, *build_dictionary(words, tok, DictionaryConfig(n_words=2000), seed=0)


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_every_label_is_the_hand_count_of_the_decoded_text(dictionary: tuple, name: str) -> None:
    tok, train, val = dictionary
    cfg = PromptsConfig(scheme=name, n_train=20, n_val=12, n_heldout=6, unit_words=[1, 3], line_width=[12, 30])
    table = build_prompts(train, val, tok, cfg, 3, seed=0)["val"]
    scheme = SCHEMES[name]
    head = len(PrefixIds.build(tok, cfg).ids) + len(tok(scheme.anchor, add_special_tokens=False)["input_ids"])
    checked = 0
    for ids, (_, prompt) in list(zip(prompt_token_ids(table), table.groupby("prompt_id"), strict=True))[:12]:
        prefix_text = tok.decode(ids[:head])
        text = tok.decode(ids)
        assert text.startswith(prefix_text)
        body = text[len(prefix_text) :]
        ends = [len(tok.decode(ids[: k + 1])) - len(prefix_text) for k in range(len(ids))]
        labels = prompt.label.to_numpy()
        assert (labels[:head] == -1).all(), "prefix and anchor carry no label"
        for k in range(head, len(ids)):
            start = ends[k - 1] if k > head else 0
            assert labels[k] == hand_count(name, body, start, ends[k]), (name, k, repr(body[: ends[k]]))
            checked += 1
        # the units a probe reads: each ends with the scheme's separator, and there are n_units of them
        last = prompt[prompt.unit_end & (prompt.label >= 0)]
        if name == "char_in_line":
            assert body.count("\n") == prompt.n_units.iloc[0] and (last.token.str.strip() != "").all()
            widths = [len(line) for line in body.split("\n")[:-1]]
            assert max(widths) - min(widths) <= max(len(w) for w in val.word) + 1  # lines filled to one width
        else:
            assert len(last) == prompt.n_units.iloc[0] and last.label.tolist() == list(range(len(last)))
    assert checked > 100


def test_the_nearer_confounds_are_what_each_scheme_names(dictionary: tuple) -> None:
    tok, train, val = dictionary
    for name, check in {
        "sentence_in_paragraph": lambda p: p.confound == p.word_index.where(p.word_index >= 0).ffill(),
        "line_in_text": lambda p: p.confound == p.word_index.where(p.word_index >= 0).ffill(),
        "item_in_list": lambda p: p.confound == p.position - p.anchor,
        "char_in_line": lambda p: p.confound == p.position - p.anchor,
    }.items():
        cfg = PromptsConfig(scheme=name, n_train=20, n_val=6, n_heldout=6)
        table = build_prompts(train, val, tok, cfg, 3, seed=0)["val"]
        body = table[table.label >= 0]
        assert np.all(check(body)), name
