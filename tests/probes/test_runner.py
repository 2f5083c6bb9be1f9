"""The per-layer runner: parallel workers and the torch backend agree with sequential scikit-learn."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from emergent_pos.activations.store import HookMeta, HookWriter, hook_path
from emergent_pos.dataset.labels import Points
from emergent_pos.model.hooks import residual_hooks
from emergent_pos.probes.config import ProbeConfig
from emergent_pos.probes.linear import LinearProbe
from emergent_pos.probes.predictions import at_layer, probe_path
from emergent_pos.probes.runner import Split, probe_layers

HOOKS = residual_hooks(2)


def _store(root: Path, n_prompts: int, d: int, seed: int, ordinal: bool = False) -> Split:
    """A split of synthetic prompts with real hook files; the unit index is in the features,
    more strongly at each later layer (``ordinal``: the label is a count along one direction)."""
    rng, word_rng = np.random.default_rng(seed), np.random.default_rng([seed, 1])
    rows = []
    for pid in range(n_prompts):
        rows += [{"prompt_id": pid, "label": -1, "start": False, "end": False, "word_type": ""}] * 4  # a prefix
        for w in range(7):
            k, word = int(rng.integers(1, 4)), f"w{word_rng.integers(0, 50)}"
            rows += [
                {"prompt_id": pid, "label": w, "start": t == 0, "end": t == k - 1, "word_type": word} for t in range(k)
            ]
    table = pd.DataFrame(rows)
    table["position"] = table.groupby("prompt_id").cumcount()
    table["confound"] = np.where(table.label >= 0, table.position - 3, -1)
    table["prefix_id"] = 0
    table["n_units"] = 7
    table = table.rename(columns={"start": "unit_start", "end": "unit_end"})
    table["is_word_start"] = table.unit_start
    centers = np.random.default_rng(123).normal(size=(8, d))  # the same in every split
    if ordinal:  # a count of 0..20 along one direction
        table["label"] = np.where(table.label >= 0, table.label * 3 + rng.integers(0, 3, len(table)), -1)
        centers = np.outer(np.arange(-1, 21), np.random.default_rng(123).normal(size=d)) * 0.2
    root.mkdir()
    for layer, hook in enumerate(HOOKS):
        x = rng.normal(size=(len(table), d)) + centers[table.label.to_numpy() + 1] * 0.4 * layer
        meta = HookMeta("synthetic", hook, (d,), "float32", len(table), "sha", "raw", "float32")
        writer = HookWriter(hook_path(root, hook), meta)
        writer.write(0, x.astype(np.float32))
        writer.commit()
    return Split(Points.select(table, "last", 5 if ordinal else 1), root, "sha", len(table), ordinal)


def _accuracy(truth: pd.Series, pred: pd.Series) -> float:
    return float(np.mean(truth.to_numpy() == pred.to_numpy()))


def test_probe_layers_parallel_and_torch_agree_with_sequential_sklearn(tmp_path: Path) -> None:
    train = _store(tmp_path / "train", 150, 12, seed=0)
    val = _store(tmp_path / "val", 80, 12, seed=1)
    cfg = ProbeConfig(max_iter=500)
    held = _store(tmp_path / "held", 40, 12, seed=2)
    runs = {}
    for name, c, jobs in (("seq", cfg, 1), ("par", cfg, 2), ("torch", dataclasses.replace(cfg, backend="torch"), None)):
        out = tmp_path / name
        out.mkdir()
        r = probe_layers(train, val, HOOKS, c, out, jobs=jobs, heldout=held)
        runs[name] = (r.val, r.facts, r.heldout, out)
    seq, seq_info, seq_held, _ = runs["seq"]
    par, par_info, par_held, par_out = runs["par"]
    # long format: every validation point once per layer, with its layer and hook
    assert len(seq) == 3 * len(val.points) and sorted(seq.layer.unique()) == [0, 1, 2]
    assert (at_layer(seq, 2).hook == HOOKS[2]).all()
    # worker processes change nothing but BLAS threads (so, at most, the last digits of a fit)
    assert list(seq.columns) == list(par.columns)
    for col in seq.columns:
        assert np.mean(seq[col].to_numpy() == par[col].to_numpy()) >= 0.99, col
    assert seq_info.keys() == par_info.keys() == {0, 1, 2}
    assert LinearProbe.load(probe_path(HOOKS[2], par_out)).coef.shape == (7, 12)
    th, th_info, th_held, _ = runs["torch"]
    for layer in range(3):
        s, t = at_layer(seq, layer), at_layer(th, layer)
        assert abs(_accuracy(s.label, t.probe) - _accuracy(s.label, s.probe)) <= 0.005
        labels = s.position_control_label
        assert abs(_accuracy(labels, t.position_control) - _accuracy(labels, s.position_control)) <= 0.005
        sh, th_ = at_layer(seq_held, layer), at_layer(th_held, layer)
        labels = sh.word_control_label
        assert abs(_accuracy(labels, th_.word_control) - _accuracy(labels, sh.word_control)) <= 0.02
        assert th_info[layer]["convergence_warnings"] == 0
    # the word-type control's labels: one per word type, the same in training and held-out prompts
    assert (seq_held.groupby("word").word_control_label.nunique() == 1).all()
    last, first = at_layer(seq, 2), at_layer(seq, 0)
    assert _accuracy(last.label, last.probe) > 0.8 > _accuracy(first.label, first.probe)


def test_saved_probe_reproduces_the_predictions(tmp_path: Path) -> None:
    """The npz formula, applied to the stored activations, gives the stage's predictions."""
    train = _store(tmp_path / "train", 60, 8, seed=0)
    val = _store(tmp_path / "val", 30, 8, seed=1)
    pred = probe_layers(train, val, HOOKS, ProbeConfig(), tmp_path).val
    with np.load(probe_path(HOOKS[1], tmp_path)) as z:
        x = val.features(HOOKS[1])
        logits = (x - z["mean"]) / z["scale"] @ z["coef"].T + z["intercept"]
        np.testing.assert_array_equal(z["classes"][logits.argmax(axis=1)], at_layer(pred, 1).probe)


def test_an_ordinal_scheme_gets_a_ridge_probe_scored_out_of_sample(tmp_path: Path) -> None:
    """Beside the classifier over binned counts: a ridge probe per layer whose saved formula gives
    the stage's predictions, and whose validation R² grows where the count is in the features."""
    from emergent_pos.probes.predictions import ridge_path
    from emergent_pos.probes.regression import RidgeProbe
    from emergent_pos.report.metrics import r2

    train = _store(tmp_path / "train", 120, 10, seed=0, ordinal=True)
    val = _store(tmp_path / "val", 60, 10, seed=1, ordinal=True)
    pred = probe_layers(train, val, HOOKS, ProbeConfig(), tmp_path / "out").val
    assert {"count", "regression", "position_mean", "confound_mean"} <= set(pred.columns)
    last = at_layer(pred, 2)
    assert (last.label == last["count"] // 5).all()
    ridge = RidgeProbe.load(ridge_path(HOOKS[2], tmp_path / "out"))
    np.testing.assert_allclose(ridge.predict(val.features(HOOKS[2])), last.regression)
    assert (
        r2(last["count"].to_numpy(), last.regression.to_numpy())
        > 0.8
        > r2(at_layer(pred, 0)["count"].to_numpy(), at_layer(pred, 0).regression.to_numpy())
    )
