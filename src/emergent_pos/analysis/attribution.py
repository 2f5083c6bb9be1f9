"""Direct logit attribution of each probe: its logits split into the residual stream's terms.

The probe at layer L is affine in ``resid_L``, and ``resid_L`` is exactly the sum of the
components before it (``components.py``: the terms each architecture has), so with
``w = coef / scale``

    logits = sum_c component_c @ w.T + (intercept - (mean / scale) @ coef.T)

term by term. The *margin* of a point is the logit of its true label minus the mean
logit of the other indices; it splits the same way. The stage checks the identity
against the residual stream captured in the same pass and refuses to report parts that
do not add up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from emergent_pos.analysis.components import Component, Layout, Reader
from emergent_pos.analysis.forward import PromptSet
from emergent_pos.analysis.intervals import mean_ci
from emergent_pos.errors import UserError
from emergent_pos.model.hooks import capture, residual_hooks
from emergent_pos.probes.linear import LinearProbe

IDENTITY_RTOL = 1e-3
"""Largest identity error, relative to the logits' scale, that the stage accepts (float32 sums)."""


def logit_parts(vectors: np.ndarray, probe: LinearProbe) -> tuple[np.ndarray, np.ndarray]:
    """``[n, C, d]`` component vectors -> ``[n, C, K]`` logit parts and the ``[K]`` constant."""
    w = probe.coef / probe.scale
    const = probe.intercept - (probe.mean / probe.scale) @ probe.coef.T
    return vectors @ w.T, const


def margin(logits: np.ndarray, label_col: np.ndarray) -> np.ndarray:
    """True-index logit minus the mean of the others, along the last axis (linear in logits).

    ``label_col`` (the true index's column) broadcasts against ``logits.shape[:-1]``.
    """
    k = logits.shape[-1]
    idx = np.broadcast_to(label_col, logits.shape[:-1])[..., None]
    true = np.take_along_axis(logits, idx, axis=-1)[..., 0]
    return (k * true - logits.sum(-1)) / (k - 1)


@dataclass
class Attribution:
    """Per probed point: each component's share of each chosen layer's margin."""

    layers: list[int]
    components: list[str]
    margins: np.ndarray  # [point, layer, component]; 0 where a component comes after the layer
    constant: np.ndarray  # [layer, K]: the constant term of the logits
    constant_margin: np.ndarray  # [point, layer]
    per_index: np.ndarray  # [point, layer, component, K]: parts of each index's logit
    label: np.ndarray
    position: np.ndarray
    prompt_id: np.ndarray
    head_outputs: np.ndarray  # [point, head, d]: every head's output (hypothesis test; no columns without heads)
    identity_error: dict[int, float]  # max |parts + constant - probe(resid)| / max |logits|


def attribute(
    bridge: Any, ps: PromptSet, probes: dict[int, LinearProbe], layout: Layout, batch_size: int = 64
) -> Attribution:
    """Split every chosen layer's probe logits at the last token of each unit into components."""
    layers = sorted(probes)
    comps: list[Component] = layout.components()
    reader = Reader(bridge, layout)
    resid = residual_hooks(bridge.cfg.n_layers)
    names = sorted(set(reader.hooks) | {resid[layer] for layer in layers})
    heads = [i for i, c in enumerate(comps) if c.kind == "head"]
    parts_all, label, position, prompt, head_out = [], [], [], [], []
    error = dict.fromkeys(layers, 0.0)
    for idx, tokens, _ in tqdm(list(ps.batches(batch_size)), desc="attribution", unit="batch"):
        got = capture(bridge, tokens, names, home=bridge.cfg.device)
        b, p = [], []
        for k, i in enumerate(idx):
            ends = ps.probed(i)
            b += [k] * len(ends)
            p += list(ends)
            label.append(ps.label[i][ends])
            position.append(ends)
            prompt.append(np.full(len(ends), ps.prompt_id[i]))
        b, p = np.array(b), np.array(p)
        vec = reader.vectors(got, comps, b, p)
        head_out.append(vec[:, heads].astype(np.float32))
        per_layer = []
        for layer in layers:
            keep = np.array([c.first_layer <= layer for c in comps])
            parts, const = logit_parts(np.where(keep[None, :, None], vec, 0.0), probes[layer])
            direct = probes[layer].decision_function(got[resid[layer]][b, p].float().cpu().numpy())
            err = np.abs(parts.sum(1) + const - direct).max() / max(np.abs(direct).max(), 1e-12)
            error[layer] = max(error[layer], float(err))
            per_layer.append(parts.astype(np.float32))
        parts_all.append(np.stack(per_layer, 1))  # [n, layer, C, K]
    per_index = np.concatenate(parts_all)
    y = np.concatenate(label)
    cols = np.stack([np.searchsorted(probes[layer].classes, y) for layer in layers], 1)  # [n, layer]
    constant = np.stack([logit_parts(np.zeros((1, 1, len(probes[layer].mean))), probes[layer])[1] for layer in layers])
    margins = margin(per_index, cols[:, :, None])
    constant_margin = margin(np.broadcast_to(constant, (len(y), *constant.shape)), cols)
    return Attribution(
        layers=layers,
        components=[c.name for c in comps],
        margins=margins,
        constant=constant,
        constant_margin=constant_margin,
        per_index=per_index,
        label=y,
        position=np.concatenate(position),
        prompt_id=np.concatenate(prompt),
        head_outputs=np.concatenate(head_out),
        identity_error=error,
    )


def check_identity(att: Attribution, model: str) -> None:
    """Refuse to report parts that do not add up to the probe's logits."""
    bad = {layer: e for layer, e in att.identity_error.items() if not e <= IDENTITY_RTOL}
    if bad:
        layer, e = next(iter(bad.items()))
        raise UserError(
            f"stage attribution: the components of {model}'s residual stream at layer {layer} do not add up "
            f"to it (relative logit error {e:.2g} > {IDENTITY_RTOL}); "
            "this architecture has terms this stage does not know"
        )


def summarize(att: Attribution, comps: list[Component], n_classes: int, top_k: int) -> tuple[list, dict, dict | None]:
    """The stage's tables: one row per (layer, component) with its mean margin share, interval and
    share of each label's logit; per layer the margin, the ``top_k`` components and the identity
    error; and the counting-head hypothesis (None without heads)."""
    rows, summary = [], {}
    for j, layer in enumerate(att.layers):
        total = att.margins[:, j].sum(1) + att.constant_margin[:, j]
        shares = {}
        for c, name in enumerate(att.components):
            if comps[c].first_layer > layer:
                continue
            shares[name] = mean_ci(att.margins[:, j, c], att.prompt_id)
            per_index = [float(att.per_index[att.label == k, j, c, k].mean()) for k in range(n_classes)]
            rows.append(
                {
                    "layer": layer,
                    "component": name,
                    "margin": shares[name]["mean"],
                    "ci_low": shares[name]["ci"][0],
                    "ci_high": shares[name]["ci"][1],
                    **{f"logit_of_index_{k}": v for k, v in enumerate(per_index)},
                }
            )
        top = sorted(shares, key=lambda n: -abs(shares[n]["mean"]))[:top_k]
        summary[str(layer)] = {
            "margin": mean_ci(total, att.prompt_id),
            "constant": float(att.constant_margin[:, j].mean()),
            "top_component": top[0],
            "top_share": shares[top[0]]["mean"] / float(total.mean()),
            "top": [{"component": n, **shares[n]} for n in top],
            "identity_error": att.identity_error[layer],
        }
    heads = [c.name for c in comps if c.kind == "head"]
    if not heads:
        return rows, summary, None
    r, partial = head_counting(att.head_outputs, att.label, att.position)
    best = int(np.argmax(partial))
    every = [
        {"head": h, "r": float(a), "r_within_position": float(b)} for h, a, b in zip(heads, r, partial, strict=True)
    ]
    return (
        rows,
        summary,
        {"head": heads[best], "r": float(r[best]), "r_within_position": float(partial[best]), "every_head": every},
    )


def head_counting(outputs: np.ndarray, label: np.ndarray, position: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How well one direction of each head's output tracks the label (the seed's counting-head guess).

    The direction is the first principal component of the head's outputs at the probed
    tokens; returns Pearson r of the projection with the label (sign-free: |r|) and the
    partial r within absolute position (both centred per position), which a head that
    only sees position cannot earn.
    """
    r, partial = [], []
    y = label.astype(float)
    pos_ids, inv = np.unique(position, return_inverse=True)
    for h in range(outputs.shape[1]):
        o = outputs[:, h] - outputs[:, h].mean(0)
        _, _, vt = np.linalg.svd(o, full_matrices=False)
        proj = o @ vt[0]
        r.append(abs(_corr(proj, y)))
        partial.append(abs(_corr(_centre(proj, inv, len(pos_ids)), _centre(y, inv, len(pos_ids)))))
    return np.array(r), np.array(partial)


def _centre(x: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    means = np.bincount(groups, weights=x, minlength=n) / np.bincount(groups, minlength=n)
    return x - means[groups]


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = a.std(), b.std()
    return float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb)) if sa > 0 and sb > 0 else 0.0
