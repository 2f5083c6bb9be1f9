"""The notebook API: README's example runs as written; probes are scikit-learn classifiers."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from emergent_pos.api import Pipeline, ProbeClassifier
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


def test_probe_classifier_is_the_fitted_scikit_learn_model() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)) * [1, 2, 3, 4, 5, 6] + 3
    y = (x[:, 0] + x[:, 1] > 6).astype(int) + (x[:, 2] > 3)
    scaler = StandardScaler().fit(x)
    lr = LogisticRegression(max_iter=1000).fit(scaler.transform(x), y)
    probe = LinearProbe(lr.coef_, lr.intercept_, lr.classes_, scaler.mean_, scaler.scale_, 10, 0)
    clf = ProbeClassifier(probe)
    z = scaler.transform(x)
    np.testing.assert_allclose(clf.decision_function(x), lr.decision_function(z), atol=1e-9)
    np.testing.assert_allclose(clf.predict_proba(x), lr.predict_proba(z), atol=1e-9)
    np.testing.assert_array_equal(clf.predict(x), lr.predict(z))
    assert clf.score(x, y) == lr.score(z, y)  # ClassifierMixin works on it
    np.testing.assert_allclose(x @ clf.coef_.T + clf.intercept_, probe.decision_function(x), atol=1e-9)


def test_reads_by_hook_with_the_matching_token_rows(tiny_project: Path) -> None:
    p = Pipeline.open(tiny_project)
    assert set(p.layer_hooks()) <= set(p.hooks("val")) and p.n_words == 7
    x, tokens = p.activations("blocks.1.hook_resid_post", split="train", rows=np.array([0, 5, 9]), as_torch=True)
    assert tuple(x.shape) == (3, 32) and tokens.position.tolist() == p.tokens("train").position[[0, 5, 9]].tolist()
    assert p.hook_meta("blocks.1.hook_resid_post")["hook_name"] == "blocks.1.hook_resid_post"
    assert p.summary().index.tolist() == [0, 1, 2]
    with pytest.raises(UserError, match="stored hooks are"):
        p.activations("blocks.1.attn.hook_z")
    with pytest.raises(UserError, match="run `dvc repro`"):
        Pipeline.open(tiny_project / "nowhere")
