"""Direct logit attribution of each probe: its logits split into the residual stream's terms.

The probe at layer L is affine in ``resid_L``, and ``resid_L`` is exactly the sum of the
components before it (``forward.py``), so with ``w = coef / scale``

    logits = sum_c component_c @ w.T + (intercept - (mean / scale) @ coef.T)

term by term. The *margin* of a point is the logit of its true word index minus the mean
logit of the other indices; it splits the same way. The stage checks the identity
against the residual stream captured in the same pass and refuses to report parts that
do not add up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from emergent_pos.analysis.forward import Component, PromptSet, capture, output_weights
from emergent_pos.errors import UserError
from emergent_pos.model.hooks import residual_hooks
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


def component_vectors(
    got: dict[str, torch.Tensor],
    comps: list[Component],
    w_o: torch.Tensor,
    b_o: torch.Tensor,
    b: np.ndarray,
    p: np.ndarray,
) -> np.ndarray:
    """``[n, C, d]``: each component's write into the residual stream at tokens ``(b[i], p[i])``."""
    out = []
    for c in comps:
        if c.head is not None:
            z = got[c.hook][b, p, c.head].float()
            out.append(z @ w_o[c.block, c.head].float())
        elif c.name.endswith(".attn_bias"):
            out.append(b_o[c.block].float().expand(len(b), -1))
        else:
            out.append(got[c.hook][b, p].float())
    return torch.stack(out, 1).cpu().numpy()


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
    head_outputs: np.ndarray  # [point, head, d]: every head's output (hypothesis test)
    identity_error: dict[int, float]  # max |parts + constant - probe(resid)| / max |logits|


def attribute(
    bridge: Any, ps: PromptSet, probes: dict[int, LinearProbe], comps: list[Component], batch_size: int = 64
) -> Attribution:
    """Split every chosen layer's probe logits at the last token of each word into components."""
    layers = sorted(probes)
    resid = residual_hooks(bridge.cfg.n_layers)
    names = sorted({c.hook for c in comps} | {resid[layer] for layer in layers})
    w_o, b_o = output_weights(bridge)
    heads = [i for i, c in enumerate(comps) if c.head is not None]
    parts_all, label, position, prompt, head_out = [], [], [], [], []
    error = dict.fromkeys(layers, 0.0)
    for idx, tokens, _ in tqdm(list(ps.batches(batch_size)), desc="attribution", unit="batch"):
        got = capture(bridge, tokens, names)
        b, p = [], []
        for k, i in enumerate(idx):
            ends = np.flatnonzero(ps.ends_word[i] & (ps.word_index[i] >= 0))
            b += [k] * len(ends)
            p += list(ends)
            label.append(ps.word_index[i][ends])
            position.append(ends)
            prompt.append(np.full(len(ends), ps.prompt_id[i]))
        b, p = np.array(b), np.array(p)
        vec = component_vectors(got, comps, w_o, b_o, b, p)
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


def head_counting(outputs: np.ndarray, label: np.ndarray, position: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How well one direction of each head's output tracks the word index.

    The direction is the first principal component of the head's outputs at word ends;
    returns Pearson r of the projection with the word index (sign-free: |r|) and the
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
