"""Baselines and the two controls are what they claim to be."""

from __future__ import annotations

import numpy as np

from emergent_pos.probes.baselines import LookupBaseline, shuffle_within, word_type_labels
from emergent_pos.probes.config import ProbeConfig
from emergent_pos.probes.linear import fit_probe


def test_position_baseline_is_the_majority_per_position() -> None:
    pos = np.array([20, 20, 20, 21, 21, 22])
    y = np.array([0, 0, 1, 1, 2, 2])
    base = LookupBaseline.fit(pos[:, None], y)
    assert base.predict(np.array([20, 21, 22, 99])[:, None]).tolist() == [0, 1, 2, 0]  # ties: lowest index


def test_position_control_is_at_chance_without_signal() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    position = rng.integers(20, 24, n)
    y = rng.integers(0, 7, n)
    x = rng.normal(size=(n, 16))  # a "model" whose features carry nothing
    control = shuffle_within(position, y, rng)
    assert all(sorted(control[position == p]) == sorted(y[position == p]) for p in range(20, 24))
    probe = fit_probe(x[:3000], control[:3000], ProbeConfig())
    acc = np.mean(probe.predict(x[3000:]) == control[3000:])
    assert abs(acc - 1 / 7) < 0.04


def test_word_type_control_gives_each_type_one_label() -> None:
    words = np.array(["cat", "dog", "cat", "emu", "dog", "cat"])
    labels = word_type_labels(words, 7, np.random.default_rng(0))
    assert set(labels) == {"cat", "dog", "emu"} and all(0 <= v < 7 for v in labels.values())
    again = word_type_labels(words[::-1], 7, np.random.default_rng(0))
    assert again == labels  # drawn once per type, whatever the order the words come in


def test_word_type_control_separates_memorising_words_from_position() -> None:
    """Held-out prompts of training words: features that encode word identity score high on
    the word-type control; features that encode only position stay near the position-only
    level of those labels (chance)."""
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(40)]
    labels = word_type_labels(np.array(vocab), 7, np.random.default_rng(1))
    embed = rng.normal(size=(40, 32))

    def split(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        word = rng.integers(0, 40, n)
        position = rng.integers(20, 40, n)
        return word, position, np.array([labels[vocab[w]] for w in word])

    (w_tr, p_tr, y_tr), (w_he, p_he, y_he) = split(3000), split(1000)
    identity = fit_probe(embed[w_tr] + 0.1 * rng.normal(size=(3000, 32)), y_tr, ProbeConfig())
    assert np.mean(identity.predict(embed[w_he]) == y_he) > 0.9
    pos_embed = rng.normal(size=(64, 32))
    position = fit_probe(pos_embed[p_tr], y_tr, ProbeConfig())
    position_only = LookupBaseline.fit(p_tr[:, None], y_tr).predict(p_he[:, None])
    acc = np.mean(position.predict(pos_embed[p_he]) == y_he)
    assert abs(acc - np.mean(position_only == y_he)) < 0.05 and acc < 0.3
