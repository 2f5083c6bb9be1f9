"""Baselines and the control task are what they claim to be."""

from __future__ import annotations

import numpy as np

from emergent_pos.probes.baselines import LookupBaseline, shuffle_within
from emergent_pos.probes.config import ProbeConfig
from emergent_pos.probes.linear import fit_probe


def test_position_baseline_is_the_majority_per_position() -> None:
    pos = np.array([20, 20, 20, 21, 21, 22])
    y = np.array([0, 0, 1, 1, 2, 2])
    base = LookupBaseline.fit(pos[:, None], y)
    assert base.predict(np.array([20, 21, 22, 99])[:, None]).tolist() == [0, 1, 2, 0]  # ties: lowest index


def test_control_task_is_at_chance_without_signal() -> None:
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
