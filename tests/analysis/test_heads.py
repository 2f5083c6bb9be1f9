"""Head scores on hand-built patterns: word-start attention scores 1, uniform attention its null."""

from __future__ import annotations

import numpy as np

from emergent_pos.analysis.forward import PromptSet
from emergent_pos.analysis.heads import SCORES, score_pattern_batches, target_masks


def prompt_set(n: int, seed: int = 0) -> PromptSet:
    """BOS, a 3-token prefix ending in the anchor, then 7 words of 1..3 tokens each."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {"tokens": [], "word_index": [], "starts_word": [], "ends_word": [], "rows": []}
    for _ in range(n):
        lengths = rng.integers(1, 4, size=7)
        wi = np.concatenate([np.full(4, -1), np.repeat(np.arange(7), lengths)])
        starts = np.concatenate([[False] * 4, *[[True] + [False] * (m - 1) for m in lengths]])
        ends = np.concatenate([[False] * 4, *[[False] * (m - 1) + [True] for m in lengths]])
        cols["tokens"].append(np.arange(len(wi)))
        cols["word_index"].append(wi)
        cols["starts_word"].append(starts)
        cols["ends_word"].append(ends)
        cols["rows"].append(np.arange(len(wi)))
    return PromptSet(**cols, prompt_id=np.arange(n))


def test_masks_name_the_right_keys() -> None:
    ps = prompt_set(1)
    wi, starts = ps.word_index[0], ps.starts_word[0]
    masks = target_masks(ps, 0, len(wi))
    q = int(np.flatnonzero(wi == 3)[-1])  # last token of word 3
    assert np.flatnonzero(masks[SCORES.index("own_word_start"), q]).tolist() == [
        int(np.flatnonzero((wi == 3) & starts)[0])
    ]
    assert np.flatnonzero(masks[SCORES.index("prev_word_end"), q]).tolist() == [int(np.flatnonzero(wi == 2)[-1])]
    assert np.flatnonzero(masks[SCORES.index("anchor"), q]).tolist() == [3]
    assert np.flatnonzero(masks[SCORES.index("bos"), q]).tolist() == [0]
    assert masks[SCORES.index("sentence_word_starts"), q].sum() == 4
    first_word = int(np.flatnonzero(wi == 0)[0])
    assert not masks[SCORES.index("prev_word_start"), first_word].any()  # word 0 has no previous word
    assert not masks[:, 2].any()  # prefix tokens are not queries


def test_word_start_attention_scores_one_and_uniform_scores_its_null() -> None:
    ps = prompt_set(64)
    width = max(len(t) for t in ps.tokens)
    pats = np.zeros((len(ps), 1, 2, width, width))
    for i in range(len(ps)):
        n = len(ps.tokens[i])
        starts = np.flatnonzero(ps.starts_word[i] & (ps.word_index[i] >= 0))
        for q in range(n):
            seen = starts[starts <= q]
            keys = seen if len(seen) else np.arange(q + 1)
            pats[i, 0, 0, q, keys] = 1 / len(keys)  # head 0: the sentence's word starts only
            pats[i, 0, 1, q, : q + 1] = 1 / (q + 1)  # head 1: uniform over the past
    scores = score_pattern_batches(ps, [(np.arange(len(ps)), pats)], has_bos=True)
    obs, null = scores.means()
    s = SCORES.index("sentence_word_starts")
    assert obs[0, 0, s] > 0.999
    assert null[0, 0, s] < 0.8  # the same offsets without word boundaries miss many starts
    for k in range(len(SCORES)):
        assert abs(obs[0, 1, k] - null[0, 1, k]) < 0.03, SCORES[k]


def test_no_bos_leaves_the_bos_score_undefined() -> None:
    ps = prompt_set(4)
    width = max(len(t) for t in ps.tokens)
    pats = np.full((len(ps), 1, 1, width, width), 1.0 / width)
    obs, _ = score_pattern_batches(ps, [(np.arange(len(ps)), pats)], has_bos=False).means()
    assert np.isnan(obs[0, 0, SCORES.index("bos")])
