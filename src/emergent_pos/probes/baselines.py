"""Baselines that see no activations, and the labels of the two control tasks.

Baselines, each the best classifier of what it sees: the majority class; absolute
position alone (the most frequent label at each position in the training prompts); the
scheme's nearer confound alone (tokens since the anchor, words so far, tokens since the
newline: ``dataset/schemes/``); and position plus "this token begins a word" (the
seed's suspected shortcut: a last token that begins with a space is a one-token word).

Controls train the same probe on other labels, so its capacity is measured, not assumed:
the *position-shuffled control* permutes the labels among points that share an absolute
position (what can the probe recover from position alone?); the *word-type control*
(Hewitt & Liang 2019) gives every word type one fixed random label (can the probe
memorise words? a separator's type is the word before it). The word-type control only
means something on word types the probe was trained on, so it is scored on held-out
prompts of training words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emergent_pos.dataset.labels import Points


def majority_class(y: np.ndarray) -> int:
    return int(np.bincount(y).argmax())


@dataclass(frozen=True)
class LookupBaseline:
    """Most frequent label for each value of some token features (no activations)."""

    table: dict[tuple[int, ...], int]
    fallback: int

    @classmethod
    def fit(cls, keys: np.ndarray, y: np.ndarray) -> LookupBaseline:
        table: dict[tuple[int, ...], np.ndarray] = {}
        for key, label in zip(map(tuple, keys.tolist()), y.tolist(), strict=True):
            table.setdefault(key, np.zeros(int(y.max()) + 1, dtype=np.int64))[label] += 1
        return cls({k: int(v.argmax()) for k, v in table.items()}, majority_class(y))

    def predict(self, keys: np.ndarray) -> np.ndarray:
        return np.array([self.table.get(k, self.fallback) for k in map(tuple, keys.tolist())], dtype=np.int64)


def lookup_keys(points: Points) -> dict[str, np.ndarray]:
    """Features of each lookup baseline: absolute position, the nearer confound, and position
    plus begins-a-word."""
    return {
        "position_only": points.position[:, None],
        "confound_only": points.confound[:, None],
        "position_and_space": np.stack([points.position, points.starts_word.astype(np.int64)], axis=1),
    }


def baseline_predictions(train: Points, val: Points) -> dict[str, np.ndarray]:
    """Each baseline fitted on the training points, predicting the validation points."""
    out = {"majority": np.full(len(val), majority_class(train.label))}
    train_keys, val_keys = lookup_keys(train), lookup_keys(val)
    for name, keys in train_keys.items():
        out[name] = LookupBaseline.fit(keys, train.label).predict(val_keys[name])
    return out


def shuffle_within(groups: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Position-shuffled control labels: ``y`` permuted among the points that share a group."""
    out = y.copy()
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        out[idx] = y[rng.permutation(idx)]
    return out


def word_type_labels(words: np.ndarray, n_classes: int, rng: np.random.Generator) -> dict[str, int]:
    """Word-type control: one random label per word type, drawn once (sorted types, so the
    draw does not depend on the order the words were met in)."""
    types = sorted(set(words.tolist()))
    return dict(zip(types, rng.integers(0, n_classes, size=len(types)).tolist(), strict=True))
