"""The trained probes applied to any text: each token's predicted label at each layer, and real text scored.

``predict_tokens`` is the function behind the ``tokens`` stage and the
``python -m emergent_pos.tokens`` command; both read a finished pipeline directory.
The probes were trained on the last token of each unit of synthetic prompts, so other
tokens show what the probe reads there, not a trained label. ``evaluate_text`` scores
them on real text, against the labels the text itself defines (``dataset/text.py``),
beside the same baselines as the synthetic validation prompts.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.colors import to_hex

from emergent_pos.dataset.labels import Points
from emergent_pos.dataset.prompts import token_strings
from emergent_pos.model.hooks import capture, residual_hooks
from emergent_pos.probes.baselines import LookupBaseline
from emergent_pos.probes.linear import LinearProbe
from emergent_pos.report.metrics import bootstrap_ci
from emergent_pos.style import index_colours, visible

COLUMNS = ["position", "token", "layer", "hook", "predicted", "probability"]


def encode(tokenizer: Any, text: str, bos: bool) -> list[int]:
    """Token ids as the prompts were built: BOS (when they had one), then the text."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [tokenizer.bos_token_id, *ids] if bos else ids


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def streams(bridge: Any, ids: list[int], layers: list[int]) -> dict[int, np.ndarray]:
    """``[tokens, d_model]`` residual stream of each layer for one sequence."""
    hooks = residual_hooks(bridge.cfg.n_layers)
    got = capture(bridge, torch.tensor([ids]), [hooks[layer] for layer in layers], home="cpu")
    return {layer: got[hooks[layer]][0].float().numpy() for layer in layers}


def predict_tokens(bridge: Any, probes: dict[int, LinearProbe], ids: list[int]) -> pd.DataFrame:
    """One row per (token, layer): the probe's prediction (``predicted``) and its softmax probability."""
    hooks = residual_hooks(bridge.cfg.n_layers)
    x = streams(bridge, ids, sorted(probes))
    strings = token_strings(bridge.tokenizer, set(ids))
    labels = [strings[i] for i in ids]
    parts = []
    for layer in sorted(probes):
        probe = probes[layer]
        p = softmax(probe.decision_function(x[layer]))
        parts.append(
            pd.DataFrame(
                {
                    "position": np.arange(len(ids)),
                    "token": labels,
                    "layer": layer,
                    "hook": hooks[layer],
                    "predicted": probe.classes[p.argmax(1)],
                    "probability": p.max(1),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)[COLUMNS]


def evaluate_text(
    bridge: Any, probes: dict[int, LinearProbe], tables: list[pd.DataFrame], scheme: str, train: Points, bin_width: int
) -> dict:
    """The probes (of ``scheme``) on real text: accuracy per layer at the tokens the scheme probes
    whose label the probes were trained on, with an interval over the text's lines, beside the
    position-only and nearer-confound baselines fitted on the synthetic training prompts."""
    layers = sorted(probes)
    classes = set(int(c) for c in next(iter(probes.values())).classes)
    y, position, confound, group, outside = [], [], [], [], 0
    predicted: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
    for t, table in enumerate(tables):
        label = table[f"label_{scheme}"].to_numpy()
        label = np.where(label >= 0, label // bin_width, -1)
        probed = table[f"end_{scheme}"].to_numpy() & (label >= 0)
        known = probed & np.isin(label, list(classes))
        outside += int((probed & ~known).sum())
        if not known.any():
            continue
        x = streams(bridge, table.token_id.tolist(), layers)
        for layer in layers:
            predicted[layer].append(probes[layer].predict(x[layer][known]))
        y.append(label[known])
        position.append(table.position.to_numpy()[known])
        confound.append(table[f"confound_{scheme}"].to_numpy()[known])
        group.append(t * 10_000 + table.label_line_in_text.to_numpy()[known])
    if not y:
        return {"scheme": scheme, "applies": False, "reason": f"the text defines no {scheme} label the probes know"}
    ys, pos, conf, groups = (np.concatenate(v) for v in (y, position, confound, group))

    def scored(pred: np.ndarray) -> dict:
        lo, hi = bootstrap_ci(pred == ys, groups)
        return {"accuracy": round(float(np.mean(pred == ys)), 4), "ci": [round(lo, 4), round(hi, 4)]}

    baselines = {
        "position_only": scored(LookupBaseline.fit(train.position[:, None], train.label).predict(pos[:, None])),
        "confound_only": scored(LookupBaseline.fit(train.confound[:, None], train.label).predict(conf[:, None])),
        "majority": scored(np.full(len(ys), np.bincount(train.label).argmax())),
    }
    per_layer = {str(layer): scored(np.concatenate(predicted[layer])) for layer in layers}
    best = max(per_layer, key=lambda k: per_layer[k]["accuracy"])
    return {
        "scheme": scheme,
        "applies": True,
        "n_points": int(len(ys)),
        "n_texts": len(tables),
        "labels_outside_the_probes": outside,
        "best_layer": int(best),
        "layers": per_layer,
        "baselines": baselines,
    }


def table(df: pd.DataFrame, layer: int) -> str:
    """A plain-text per-token table of one layer, for a terminal."""
    part = df[df.layer == layer]
    lines = [f"layer {layer} ({part.hook.iloc[0]})", f"{'pos':>4}  {'token':<20} {'predicted':>9} {'prob':>6}"]
    for row in part.itertuples():
        lines.append(f"{row.position:>4}  {row.token!r:<20} {row.predicted:>9} {row.probability:>6.3f}")
    return "\n".join(lines)


def grid(df: pd.DataFrame) -> tuple[list[str], list[int], np.ndarray, np.ndarray]:
    """Tokens, layers and the [layer, token] predicted label and probability."""
    layers = sorted(df.layer.unique())
    first = df[df.layer == layers[0]]
    index = np.stack([df[df.layer == layer].predicted.to_numpy() for layer in layers])
    prob = np.stack([df[df.layer == layer].probability.to_numpy() for layer in layers])
    return list(first.token), [int(v) for v in layers], index, prob


def page(texts: list[tuple[str, pd.DataFrame]], title: str, per_row: int = 24) -> str:
    """A self-contained HTML page (no scripts, no network): per text, its tokens in rows of
    ``per_row`` (it never runs past the window), one row of cells per layer, each coloured by
    the predicted label in the figures' colours (``style.index_colours``)."""
    n_colours = max(int(df.predicted.max()) + 1 for _, df in texts)
    colours = [to_hex(c) for c in index_colours(n_colours)]
    legend = " ".join(f"<span class='cell' style='background:{colours[i]}'>{i}</span>" for i in range(n_colours))
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:1em;max-width:1350px}"
        "table{border-collapse:collapse;margin-bottom:0.6em}"
        "td,th{border:1px solid #ddd;padding:2px 4px;text-align:center;font-size:12px;min-width:2.2em}"
        "td.tok{font-family:monospace;white-space:pre;background:#f4f4f4}"
        ".cell{display:inline-block;padding:1px 6px;color:white;font-size:12px}"
        "p.text{white-space:pre-wrap;font-family:monospace;background:#fafafa;padding:0.4em}</style>"
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p>Each cell: the label the layer's probe predicts at that token (the number; colour as in the "
        "figures) and its probability (opacity). The probes were trained on the last token of each unit. "
        f"Labels: {legend}. In the header row · is a space and ⏎ a newline.</p>",
    ]
    for k, (text, df) in enumerate(texts):
        tokens, layers, index, prob = grid(df)
        out.append(f"<h2>Text {k}</h2><p class='text'>{html.escape(text)}</p>")
        for start in range(0, len(tokens), per_row):
            cols = range(start, min(start + per_row, len(tokens)))
            out.append("<table><tr><th>layer</th>")
            out += [f"<td class='tok'>{html.escape(visible(tokens[c]))}</td>" for c in cols]
            out.append("</tr>")
            for r, layer in enumerate(layers):
                out.append(f"<tr><th>{layer}</th>")
                for c in cols:
                    i, p = int(index[r, c]), float(prob[r, c])
                    out.append(
                        f"<td style='background:{colours[i]};opacity:{0.25 + 0.75 * p:.2f};color:white' "
                        f"title='p={p:.3f}'>{i}</td>"
                    )
                out.append("</tr>")
            out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)


def uses_bos(first_prompt_ids: np.ndarray, tokenizer: Any) -> bool:
    """Whether the pipeline's prompts start with BOS (then new text gets it too)."""
    return tokenizer.bos_token_id is not None and int(first_prompt_ids[0]) == tokenizer.bos_token_id
