"""Patching a run into itself changes nothing; pairs split the same tokens into one word more."""

from __future__ import annotations

import numpy as np

from emergent_pos.analysis.components import Layout
from emergent_pos.analysis.forward import pad
from emergent_pos.analysis.measure import Task
from emergent_pos.analysis.patching import Pairs, compositions, make_pairs, patch


def test_patching_a_run_into_itself_changes_nothing(tiny_bridge, task: Task) -> None:
    ps = task.ps
    seqs = [ps.tokens[i][: ps.start(0) + 4] for i in range(4)]
    same = Pairs(pad(seqs), pad(seqs), np.zeros(4, dtype=int), np.ones(4, dtype=int), ps.start(0))
    comps = [c for c in Layout.read(tiny_bridge).components() if c.kind == "embed" or c.ablatable]
    gain, full, _ = patch(tiny_bridge, same, task.probes[2], 2, comps)
    assert gain.shape == (len(comps), 4, 4)
    np.testing.assert_allclose(gain, 0.0, atol=1e-5)
    np.testing.assert_allclose(full, 0.0, atol=1e-5)


def test_pairs_end_one_word_apart() -> None:
    words = {n: [np.full(n, 10 * n + k) for k in range(3)] for n in (1, 2, 3)}
    pairs = make_pairs(words, np.array([1, 2]), 20, 5, np.random.default_rng(0))
    assert pairs.a.shape == pairs.b.shape == (20, 7)
    assert np.all(pairs.index_b == pairs.index_a + 1)
    assert {len(p) for p in compositions(4, 3)[2]} == {2} and (1, 3) in compositions(4, 3)[2]
