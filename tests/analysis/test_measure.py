"""The measurement behind every causal test: a hook that changes nothing changes nothing; read-outs are exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from emergent_pos.analysis.components import Layout
from emergent_pos.analysis.forward import Readout, pad
from emergent_pos.analysis.measure import Task, measure
from emergent_pos.analysis.subspace import project_out, random_basis
from emergent_pos.model.hooks import residual_hooks
from emergent_pos.model.load import load_bridge
from emergent_pos.model.placement import parse_placement
from helpers import no_hooks


def test_rank_zero_projection_changes_nothing_and_full_rank_destroys_the_probe(tiny_bridge, task: Task) -> None:
    layer = 1
    hook = residual_hooks(tiny_bridge.cfg.n_layers)[layer]
    clean = measure(tiny_bridge, task, no_hooks)
    d = tiny_bridge.cfg.d_model
    empty = torch.zeros((d, 0))
    same = measure(tiny_bridge, task, lambda i, n: [(hook, project_out(empty))])
    np.testing.assert_allclose(same.loss, clean.loss, rtol=1e-5)
    np.testing.assert_array_equal(same.correct, clean.correct)
    full = torch.as_tensor(random_basis(d, d, np.random.default_rng(0)), dtype=torch.float32)
    gone = measure(tiny_bridge, task, lambda i, n: [(hook, project_out(full))])
    j = sorted(task.probes).index(layer)
    # every point's stream is 0: the probe predicts one constant index, right once per prompt of 7 words
    assert gone.accuracy()[j] == pytest.approx(1 / 7)
    assert clean.accuracy()[j] > 1 / 7


def test_losses_equal_the_model_logits_whatever_the_chunk(tiny_bridge, task: Task) -> None:
    """The chunked read-out (a few positions at a time) gives the loss of the model's own logits."""
    seqs = task.sequences(np.arange(len(task.ps)))
    with torch.inference_mode():
        logp = torch.log_softmax(tiny_bridge(pad(seqs), return_type="logits").float(), -1)
    want = [
        -logp[k, : len(s) - 1].gather(1, torch.as_tensor(s[1:])[:, None])[:, 0].sum().item() for k, s in enumerate(seqs)
    ]
    for budget in (64 << 20, 4 * int(tiny_bridge.cfg.d_vocab) * 3):  # whole batches, and 3 positions a chunk
        readout = Readout(tiny_bridge, budget_bytes=budget)
        out = measure(tiny_bridge, task, no_hooks, readout)
        np.testing.assert_allclose(out.loss[:, 0], want, rtol=1e-5)
    assert Readout(tiny_bridge).check(seqs[0], "tiny") < 1e-5


def test_an_accelerate_map_measures_what_one_device_measures(tiny_project: Path, tiny_bridge, task: Task) -> None:
    """Interventions through a model placed by accelerate (all on the CPU here; the GPU case is
    the `gpu`-marked placement test): the same losses, accuracies and layout."""
    placed = load_bridge(tiny_project / "data/model", parse_placement('{"device_map": {"": "cpu"}}'))
    hook = residual_hooks(placed.cfg.n_layers)[1]
    q = torch.as_tensor(random_basis(placed.cfg.d_model, 3, np.random.default_rng(0)), dtype=torch.float32)
    for bridge in (tiny_bridge, placed):
        out = measure(bridge, task, lambda i, n: [(hook, project_out(q))])
        if bridge is tiny_bridge:
            want = out
    np.testing.assert_allclose(out.loss, want.loss, rtol=1e-6)
    np.testing.assert_array_equal(out.correct, want.correct)
    assert Layout.read(placed).components() == Layout.read(tiny_bridge).components()


@pytest.mark.parametrize(
    ("name", "end", "where"),
    [
        ("word_in_sentence", ".", "after"),
        ("item_in_list", ".", "replaces"),
        ("line_in_text", "\n", "after"),
        ("char_in_line", "\n", "inside"),
    ],
)
def test_each_scheme_decides_where_its_count_puts_the_end(tiny_bridge, name: str, end: str, where: str) -> None:
    """The decision tokens are the scheme's own: the last word (the full stop follows), an item's
    last word (its "," becomes "." for the last item), a line's newline (a blank line follows),
    a word on a wrapped line (is the newline next?)."""
    from emergent_pos.analysis.forward import PromptSet
    from emergent_pos.dataset.config import DictionaryConfig, PromptsConfig
    from emergent_pos.dataset.dictionary import build_dictionary
    from emergent_pos.dataset.prompts import build_prompts
    from emergent_pos.dataset.schemes import SCHEMES
    from emergent_pos.dataset.words import source_words

    tok = tiny_bridge.tokenizer
    words, _ = source_words("wordfreq", 2000)
    train, val = build_dictionary(words, tok, DictionaryConfig(n_words=2000), seed=0)
    cfg = PromptsConfig(scheme=name, n_train=20, n_val=6, n_heldout=6, eval_n_units=[], line_width=[12, 30])
    ps = PromptSet.from_table(build_prompts(train, val, tok, cfg, 3, seed=0)["val"], 7, 6)
    task = Task.build(ps, SCHEMES[name].decision, tok, {}, 7)
    assert tok.decode([task.end_id]) == end
    for i in range(len(ps)):
        seq, at, here = task.seqs[i], task.decide[i], task.ends_here[i]
        assert np.array_equal(seq[at + 1] == task.end_id, here)  # the end follows exactly where it is due
        if where == "inside":
            assert np.array_equal(seq, ps.tokens[i]) and here.sum() >= 6
        else:
            assert here.sum() == 1 and task.decide_unit[i][here][0] == 6  # after the last unit only
            assert len(seq) == len(ps.tokens[i]) + (where == "after")
