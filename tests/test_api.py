"""The notebook API: README's example runs as written; probes are scikit-learn's own objects."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from emergent_pos.api import Pipeline, sklearn_probe
from emergent_pos.errors import UserError
from emergent_pos.probes.linear import LinearProbe
from helpers import REPO


def readme_block(heading: str, language: str) -> str:
    """The first ``language`` code block under a README heading."""
    text = (REPO / "README.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


def test_readme_notebook_example_runs_as_written(tiny_project: Path, capsys: pytest.CaptureFixture) -> None:
    code = readme_block("Using the results from Python", "python")
    cwd = os.getcwd()
    os.chdir(tiny_project)
    try:
        exec(compile(code, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert out.startswith("toy ['blocks.0.hook_resid_pre'")
    assert "layer 1: " in out


def test_the_probe_is_scikit_learns_own_fitted_pipeline() -> None:
    """The saved arrays in a frozen StandardScaler + LogisticRegression: the same numbers as a direct
    scikit-learn fit; `clone` gives an unfitted pipeline with the same settings, which refits, and
    which passes scikit-learn's own estimator checks."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)) * [1, 2, 3, 4, 5, 6] + 3
    y = (x[:, 0] + x[:, 1] > 6).astype(int) + (x[:, 2] > 3)
    scaler = StandardScaler().fit(x)
    lr = LogisticRegression(C=0.5, max_iter=1000).fit(scaler.transform(x), y)
    probe = LinearProbe(lr.coef_, lr.intercept_, lr.classes_, scaler.mean_, scaler.scale_, 10, 0)
    frozen = sklearn_probe(probe, {"C": 0.5, "max_iter": 1000, "tol": 1e-4, "solver": "lbfgs", "standardize": True})
    assert isinstance(frozen, FrozenEstimator)
    z = scaler.transform(x)
    np.testing.assert_allclose(frozen.decision_function(x), lr.decision_function(z), atol=1e-9)
    np.testing.assert_allclose(frozen.predict_proba(x), lr.predict_proba(z), atol=1e-9)
    np.testing.assert_array_equal(frozen.predict(x), lr.predict(z))
    assert frozen.score(x, y) == lr.score(z, y)
    assert frozen.fit(x[:5], y[:5]) is frozen and frozen.score(x, y) == lr.score(z, y)  # frozen: fit changes nothing
    fresh = clone(frozen.estimator)
    assert fresh[-1].C == 0.5 and not hasattr(fresh[-1], "coef_")
    np.testing.assert_allclose(fresh.fit(x, y).predict_proba(x), lr.predict_proba(z), atol=1e-4)
    # every check but two that scikit-learn's own Pipeline fails whatever its steps (it fits them in place)
    in_place = "scikit-learn's Pipeline fits its steps in place, whatever they are"
    expected = dict.fromkeys(("check_estimators_overwrite_params", "check_dont_overwrite_parameters"), in_place)
    check_estimator(clone(frozen.estimator), expected_failed_checks=expected)
    check_estimator(clone(frozen.estimator[-1]))  # the probe's own classifier passes them all
    # the seed's one-vs-rest probe: a OneVsRestClassifier of binary logistic regressions
    ovr = OneVsRestClassifier(LogisticRegression(max_iter=1000)).fit(z, y)
    coef = np.concatenate([e.coef_ for e in ovr.estimators_])
    intercept = np.concatenate([e.intercept_ for e in ovr.estimators_])
    probe = LinearProbe(coef, intercept, ovr.classes_, scaler.mean_, scaler.scale_, 10, 0)
    frozen = sklearn_probe(probe, {"multi_class": "ovr", "standardize": True})
    np.testing.assert_allclose(frozen.predict_proba(x), ovr.predict_proba(z), atol=1e-9)
    np.testing.assert_array_equal(frozen.predict(x), ovr.predict(z))


def test_reads_by_hook_with_the_matching_token_rows(tiny_project: Path) -> None:
    p = Pipeline.open(tiny_project)
    assert set(p.layer_hooks()) <= set(p.hooks("val")) and p.n_units == 7 and p.scheme == "word_in_sentence"
    x, tokens = p.activations("blocks.1.hook_resid_post", split="train", rows=np.array([0, 5, 9]), as_torch=True)
    assert tuple(x.shape) == (3, 32) and tokens.position.tolist() == p.tokens("train").position[[0, 5, 9]].tolist()
    assert p.hook_meta("blocks.1.hook_resid_post")["hook_name"] == "blocks.1.hook_resid_post"
    assert p.summary().index.tolist() == [0, 1, 2]
    with pytest.raises(UserError, match="stored hooks are"):
        p.activations("blocks.1.attn.hook_z")
    with pytest.raises(UserError, match="not inside a pipeline directory"):
        Pipeline.open(tiny_project.parent)
    assert Pipeline.open(tiny_project / "data" / "probes").root == tiny_project.resolve()  # from a subfolder
