"""The portable probe equals a direct scikit-learn fit, for the default and the seed's setting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler

from emergent_pos.probes.config import ProbeConfig
from emergent_pos.probes.linear import LinearProbe, fit_probe


def _data(seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 7, 1500)
    centers = rng.normal(size=(7, 24))
    x = centers[y] * 0.6 + rng.normal(size=(1500, 24)) + 3.0
    return x[:1000], y[:1000], x[1000:], y[1000:]


def test_probe_matches_direct_sklearn_fit(tmp_path: Path) -> None:
    xtr, ytr, xva, yva = _data()
    probe = fit_probe(xtr, ytr, ProbeConfig())
    scaler = StandardScaler().fit(xtr)
    direct = LogisticRegression(C=1.0, max_iter=1000, random_state=0).fit(scaler.transform(xtr), ytr)
    expected = direct.predict(scaler.transform(xva))
    assert np.array_equal(probe.predict(xva), expected)
    assert 0.5 < np.mean(expected == yva) < 1.0
    probe.save(tmp_path / "p.npz")
    again = LinearProbe.load(tmp_path / "p.npz")
    assert np.array_equal(again.predict(xva), expected)
    assert probe.convergence_warnings == 0


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_seed_setting_ovr_saga_unscaled() -> None:
    xtr, ytr, xva, _ = _data(1)
    cfg = ProbeConfig(solver="saga", multi_class="ovr", standardize=False, max_iter=100, seed=42)
    probe = fit_probe(xtr, ytr, cfg)
    direct = OneVsRestClassifier(LogisticRegression(solver="saga", C=1.0, max_iter=100, random_state=42))
    direct.fit(xtr, ytr)
    assert np.array_equal(probe.predict(xva), direct.predict(xva))
    assert probe.convergence_warnings > 0  # unscaled saga at 100 iterations does not converge: counted
