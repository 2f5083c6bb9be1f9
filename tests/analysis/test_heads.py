"""Head scores on hand-built patterns, per scheme: unit-start attention scores 1, uniform attention its null."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from emergent_pos.analysis.forward import PromptSet, donors
from emergent_pos.analysis.heads import SCORES, score_pattern_batches, target_masks
from emergent_pos.dataset.config import DictionaryConfig, PromptsConfig
from emergent_pos.dataset.dictionary import build_dictionary
from emergent_pos.dataset.prompts import build_prompts
from emergent_pos.dataset.schemes import SCHEMES
from emergent_pos.dataset.words import source_words


def prompt_set(n: int, seed: int = 0) -> PromptSet:
    """BOS, a 3-token prefix ending in the anchor, then 7 words of 1..3 tokens each."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {k: [] for k in ("tokens", "label", "unit", "unit_start", "unit_end", "anchor", "rows")}
    for _ in range(n):
        lengths = rng.integers(1, 4, size=7)
        wi = np.concatenate([np.full(4, -1), np.repeat(np.arange(7), lengths)])
        cols["tokens"].append(np.arange(len(wi)))
        cols["label"].append(wi)
        cols["unit"].append(wi)
        cols["unit_start"].append(np.concatenate([[False] * 4, *[[True] + [False] * (m - 1) for m in lengths]]))
        cols["unit_end"].append(np.concatenate([[False] * 4, *[[False] * (m - 1) + [True] for m in lengths]]))
        cols["anchor"].append(np.where(wi >= 0, 3, -1))
        cols["rows"].append(np.arange(len(wi)))
    return PromptSet(**cols, prompt_id=np.arange(n))


@pytest.fixture(scope="module")
def scheme_prompts(tiny_model_dir: Path) -> dict[str, PromptSet]:
    """Validation prompts of every scheme, as the mechanism stages read them."""
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    words, _ = source_words("wordfreq", 2000)
    train, val = build_dictionary(words, tok, DictionaryConfig(n_words=2000), seed=0)
    out = {}
    for name in SCHEMES:
        cfg = PromptsConfig(scheme=name, n_train=20, n_val=48, n_heldout=6, eval_n_units=[])
        out[name] = PromptSet.from_table(build_prompts(train, val, tok, cfg, 3, seed=0)["val"], 7, 48)
    return out


def test_masks_name_the_right_keys() -> None:
    ps = prompt_set(1)
    wi, starts = ps.unit[0], ps.unit_start[0]
    masks = target_masks(ps, 0, len(wi))
    q = int(np.flatnonzero(wi == 3)[-1])  # last token of word 3
    assert np.flatnonzero(masks[SCORES.index("own_unit_start"), q]).tolist() == [
        int(np.flatnonzero((wi == 3) & starts)[0])
    ]
    assert np.flatnonzero(masks[SCORES.index("prev_unit_end"), q]).tolist() == [int(np.flatnonzero(wi == 2)[-1])]
    assert np.flatnonzero(masks[SCORES.index("anchor"), q]).tolist() == [3]
    assert np.flatnonzero(masks[SCORES.index("bos"), q]).tolist() == [0]
    assert masks[SCORES.index("unit_starts_since_anchor"), q].sum() == 4
    first_word = int(np.flatnonzero(wi == 0)[0])
    assert not masks[SCORES.index("prev_unit_start"), first_word].any()  # word 0 has no previous word
    assert not masks[:, 2].any()  # prefix tokens are not queries


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_unit_start_attention_scores_one_and_uniform_scores_its_null(
    scheme_prompts: dict[str, PromptSet], name: str
) -> None:
    """Head 0 attends only to the unit starts since each query's anchor (its anchor before the
    first): it scores 1 on that score; head 1 attends uniformly: it scores its null on every
    score. Built from the scheme's own prompts (the anchor is the list's colon, a line's newline...)."""
    ps = scheme_prompts[name]
    width = max(len(t) for t in ps.tokens)
    pats = np.zeros((len(ps), 1, 2, width, width))
    for i in range(len(ps)):
        n = len(ps.tokens[i])
        starts = np.flatnonzero(ps.unit_start[i] & (ps.unit[i] >= 0))
        for q in range(n):
            anchor = ps.anchor[i][q]
            seen = starts[(starts > anchor) & (starts <= q)] if anchor >= 0 else []
            keys = seen if len(seen) else [max(anchor, 0)] if anchor >= 0 else np.arange(q + 1)
            pats[i, 0, 0, q, keys] = 1 / len(keys)  # head 0: the unit starts since the anchor
            pats[i, 0, 1, q, : q + 1] = 1 / (q + 1)  # head 1: uniform over the past
    scores = score_pattern_batches(ps, [(np.arange(len(ps)), pats)], has_bos=True)
    obs, null = scores.means()
    s = SCORES.index("unit_starts_since_anchor")
    own = SCORES.index("own_unit_start")
    assert obs[0, 0, s] + obs[0, 0, SCORES.index("anchor")] > 0.999  # all of it on those keys
    assert obs[0, 0, s] > 0.6 and null[0, 0, s] < obs[0, 0, s] - 0.1  # offsets alone miss the unit boundaries
    assert obs[0, 0, own] > null[0, 0, own]
    for k in range(len(SCORES)):
        assert abs(obs[0, 1, k] - null[0, 1, k]) < 0.03, SCORES[k]


def test_no_bos_leaves_the_bos_score_undefined() -> None:
    ps = prompt_set(4)
    width = max(len(t) for t in ps.tokens)
    pats = np.full((len(ps), 1, 1, width, width), 1.0 / width)
    obs, _ = score_pattern_batches(ps, [(np.arange(len(ps)), pats)], has_bos=False).means()
    assert np.isnan(obs[0, 0, SCORES.index("bos")])


def test_donors_are_never_shorter() -> None:
    lengths = np.array([5, 7, 7, 6, 9])
    d = donors(lengths, np.random.default_rng(0))
    assert np.all(lengths[d] >= lengths)
    assert all(d[i] != i for i in range(4))  # only the unique longest keeps itself
    assert d[4] == 4
