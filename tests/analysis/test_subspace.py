"""The probe's subspace: spanned by the class differences; resampling it from oneself changes nothing."""

from __future__ import annotations

import numpy as np
import torch

from emergent_pos.analysis.measure import Task, measure
from emergent_pos.analysis.subspace import probe_basis, resample
from emergent_pos.model.hooks import residual_hooks
from helpers import no_hooks


def test_probe_basis_spans_the_class_differences(task: Task) -> None:
    probe = task.probes[1]
    q = probe_basis(probe)
    assert q.shape[1] == len(probe.classes) - 1
    np.testing.assert_allclose(q.T @ q, np.eye(q.shape[1]), atol=1e-8)
    w = probe.coef / probe.scale
    diffs = w[1:] - w[0]
    np.testing.assert_allclose(diffs @ q @ q.T, diffs, atol=1e-8)  # inside the subspace


def test_resampling_from_oneself_changes_nothing(tiny_bridge, task: Task) -> None:
    hook = residual_hooks(tiny_bridge.cfg.n_layers)[1]
    q = torch.as_tensor(probe_basis(task.probes[1]), dtype=torch.float32)
    clean = measure(tiny_bridge, task, no_hooks)
    same = measure(tiny_bridge, task, lambda i, n: [(hook, resample(q, np.arange(len(i))))])
    np.testing.assert_allclose(same.loss, clean.loss, rtol=1e-4)
