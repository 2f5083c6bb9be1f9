"""The trained probes applied to any text: each token's predicted word index at each layer.

``predict_tokens`` is the function behind the ``tokens`` stage and the
``python -m emergent_pos.tokens`` command; both read a finished pipeline directory.
The probes were trained on the last token of each word, so other tokens show what the
probe reads there, not a trained label.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from emergent_pos.analysis.forward import capture
from emergent_pos.dataset.prompts import token_strings
from emergent_pos.model.hooks import residual_hooks
from emergent_pos.probes.linear import LinearProbe
from emergent_pos.probes.predictions import PROBES_DIR, probe_path

COLUMNS = ["position", "token", "layer", "hook", "word_index", "probability"]


def load_probes(
    n_layers: int, layers: list[int] | None = None, root: str | Path = PROBES_DIR
) -> dict[int, LinearProbe]:
    """The saved probe of each layer (0 = embeddings), keyed by layer."""
    hooks = residual_hooks(n_layers)
    chosen = range(len(hooks)) if layers is None else layers
    return {layer: LinearProbe.load(probe_path(hooks[layer], root)) for layer in chosen}


def encode(tokenizer: Any, text: str, bos: bool) -> list[int]:
    """Token ids as the prompts were built: BOS (when they had one), then the text."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [tokenizer.bos_token_id, *ids] if bos else ids


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def predict_tokens(bridge: Any, probes: dict[int, LinearProbe], ids: list[int]) -> pd.DataFrame:
    """One row per (token, layer): the probe's predicted word index and its softmax probability."""
    hooks = residual_hooks(bridge.cfg.n_layers)
    names = [hooks[layer] for layer in sorted(probes)]
    got = capture(bridge, torch.tensor([ids]), names)
    strings = token_strings(bridge.tokenizer, set(ids))
    labels = [strings[i] for i in ids]
    parts = []
    for layer in sorted(probes):
        x = got[hooks[layer]][0].float().cpu().numpy()
        probe = probes[layer]
        p = softmax(probe.decision_function(x))
        parts.append(
            pd.DataFrame(
                {
                    "position": np.arange(len(ids)),
                    "token": labels,
                    "layer": layer,
                    "hook": hooks[layer],
                    "word_index": probe.classes[p.argmax(1)],
                    "probability": p.max(1),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)[COLUMNS]


def table(df: pd.DataFrame, layer: int) -> str:
    """A plain-text per-token table of one layer, for a terminal."""
    part = df[df.layer == layer]
    lines = [f"layer {layer} ({part.hook.iloc[0]})", f"{'pos':>4}  {'token':<20} {'index':>5} {'prob':>6}"]
    for row in part.itertuples():
        lines.append(f"{row.position:>4}  {row.token!r:<20} {row.word_index:>5} {row.probability:>6.3f}")
    return "\n".join(lines)


def grid(df: pd.DataFrame) -> tuple[list[str], list[int], np.ndarray, np.ndarray]:
    """Tokens, layers and the [layer, token] predicted index and probability."""
    layers = sorted(df.layer.unique())
    first = df[df.layer == layers[0]]
    index = np.stack([df[df.layer == layer].word_index.to_numpy() for layer in layers])
    prob = np.stack([df[df.layer == layer].probability.to_numpy() for layer in layers])
    return list(first.token), [int(v) for v in layers], index, prob


_COLOURS = [
    "#440154",
    "#3b528b",
    "#21918c",
    "#5ec962",
    "#fde725",
    "#f89540",
    "#cc4778",
    "#7e03a8",
    "#0d0887",
    "#b12a90",
]


def page(texts: list[tuple[str, pd.DataFrame]], title: str) -> str:
    """A self-contained HTML page (no scripts, no network): one table per text, layers as rows."""
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;margin-bottom:2em}"
        "td,th{border:1px solid #ddd;padding:2px 4px;text-align:center;font-size:12px}"
        "td.tok{font-family:monospace;white-space:pre}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p>Each cell: the word index the layer's probe predicts at that token and its probability "
        "(opacity). The probes were trained on the last token of each word.</p>",
    ]
    for text, df in texts:
        tokens, layers, index, prob = grid(df)
        out.append(f"<h2>{html.escape(text[:120])}</h2><table><tr><th>layer</th>")
        out += [f"<td class='tok'>{html.escape(t)}</td>" for t in tokens]
        out.append("</tr>")
        for r, layer in enumerate(layers):
            out.append(f"<tr><th>{layer}</th>")
            for i, p in zip(index[r], prob[r], strict=True):
                colour = _COLOURS[int(i) % len(_COLOURS)]
                out.append(
                    f"<td style='background:{colour};opacity:{0.25 + 0.75 * p:.2f};color:white' "
                    f"title='p={p:.3f}'>{int(i)}</td>"
                )
            out.append("</tr>")
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)


def uses_bos(first_prompt_ids: np.ndarray, tokenizer: Any) -> bool:
    """Whether the pipeline's prompts start with BOS (then new text gets it too)."""
    return tokenizer.bos_token_id is not None and int(first_prompt_ids[0]) == tokenizer.bos_token_id
