"""One metric against one param across DVC experiments: ``emergent-pos compare``.

    emergent-pos compare model.revision --layers          # when does the count emerge?
    emergent-pos compare probe.C --metric accuracy --metric selectivity
    emergent-pos compare prompts.scheme                   # a table and accuracy by layer per scheme
    emergent-pos compare prompts.scheme --where model.init=random   # one slice of a two-param sweep

The experiments (and the commits they branch from) are the ones ``dvc exp show --json``
lists. That listing leaves out lists, so each point's metrics files are read whole from
its git commit (experiments are commits under ``refs/exps``): the per-layer values and the
intervals come from there. A ``stepN`` value (Pythia's and the organism's checkpoints)
is read as the number N; numbers spanning more than a factor of 20 get a log axis. A
param whose values are not numbers (``prompts.scheme``, ``model.name``) gets a table,
one row per value, and a figure of accuracy by layer, one line per value. Writes a PNG
and the data as JSON.
"""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import yaml
from matplotlib.figure import Figure

from emergent_pos.errors import UserError

METRICS_DIR = "metrics"
BASELINES = {"position_only": "accuracy", "loss_up_random": "loss_up_probe"}
"""Metrics drawn dashed, with the metric each is read against: the baselines of the others."""
STEP = re.compile(r"(?:step|checkpoint-)(\d+)")


@dataclass
class Point:
    """One experiment (or commit): its param value and the metrics read at its commit."""

    experiment: str
    rev: str
    timestamp: str
    value: Any
    x: float | str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, list[float]] = field(default_factory=dict)
    layers: dict[int, dict[str, float]] = field(default_factory=dict)
    files: dict[str, dict] = field(default_factory=dict)  # every metrics/*.json as committed, by stem

    @property
    def probes(self) -> dict:
        """metrics/probes.json as committed."""
        return self.files.get("probes") or {}


def exp_show(root: Path, all_commits: bool = False) -> list[dict]:
    """``dvc exp show --json`` of the project at ``root``."""
    cmd = ["dvc", "exp", "show", "--json", *(["-A"] if all_commits else [])]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"`{' '.join(cmd)}` failed in {root}: {last}")
    return _json(proc.stdout, " ".join(cmd))


def _json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{source} is not valid JSON ({err})") from err


def _param(params: dict, name: str) -> Any:
    value: Any = params
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _flat(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Nested params as dotted keys (``{"probe": {"C": 1}}`` -> ``{"probe.C": 1}``)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _params_of(entry: dict) -> dict:
    data = entry.get("data") or {}
    return (((data.get("params") or {}).get("params.yaml")) or {}).get("data") or {}


def parse_where(pairs: list[str] | None) -> dict[str, Any]:
    """``--where KEY=VALUE`` pairs as a mapping, each value read as YAML reads it (``4``, ``true``)."""
    where = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UserError(f"--where {pair!r}: expected KEY=VALUE, e.g. model.init=pretrained")
        where[name] = yaml.safe_load(value)
    return where


def entries(
    listing: list[dict], param: str, where: dict[str, Any] | None = None, notes: list[str] | None = None
) -> list[Point]:
    """Every committed entry (baseline commits and their finished experiments) holding ``param``,
    with every ``where`` key at its value and every other param at its baseline commit's value:
    one slice through the baseline, so that experiments of other sweeps (a control, another
    model) sharing a value of ``param`` are left out (with a note) instead of replacing it.

    The workspace is left out: it is not a commit, and it repeats a commit or the last run.
    Queued and running experiments are left out too: DVC lists them under a commit that
    holds their params but the baseline's metrics.
    """
    where = where or {}
    points = []

    def add(entry: dict, name: str, base: dict[str, Any]) -> None:
        data = entry.get("data") or {}
        params = _params_of(entry)
        value = _param(params, param)
        if entry.get("error") or value is None:
            return
        if any(_param(params, k) != v for k, v in where.items()):
            return
        flat = _flat(params)
        other = sorted(
            k for k in flat.keys() | base.keys() if k != param and k not in where and flat.get(k) != base.get(k)
        )
        if other:
            if notes is not None:
                notes.append(f"{name}: also changes {', '.join(other[:3])} (left out)")
            return
        points.append(Point(name, data.get("rev") or entry["rev"], data.get("timestamp") or "", value))

    for commit in listing:
        if commit.get("rev") == "workspace":
            continue
        base = _flat(_params_of(commit))
        add(commit, commit.get("name") or commit["rev"][:7], base)
        for group in commit.get("experiments") or []:
            if (group.get("executor") or {}).get("state") not in (None, "success"):
                continue
            for exp in group.get("revs") or []:
                add(exp, exp.get("name") or exp["rev"][:7], base)
    return points


def is_categorical(listing: list[dict], param: str, where: dict[str, Any] | None = None) -> bool:
    """Whether ``param``'s values across the listed experiments are not numbers (scheme names)."""
    values = [p.value for p in entries(listing, param, where)]
    return bool(values) and all(as_number(v) is None for v in values)


def as_number(value: Any) -> float | None:
    """A param value as a number: numbers as they are, ``stepN``/``checkpoint-N`` as N."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    match = STEP.fullmatch(str(value))
    return float(match.group(1)) if match else None


def place(points: list[Point]) -> tuple[list[Point], list[str]]:
    """Give each point its x; keep the newest point of each x. Returns the points and notes."""
    numbers = [as_number(p.value) for p in points]
    numeric = any(n is not None for n in numbers)
    notes, kept = [], {}
    for p, n in zip(points, numbers, strict=True):
        if numeric and n is None:
            notes.append(f"{p.experiment}: {p.value!r} is not a number (left out)")
            continue
        p.x = n if numeric else str(p.value)
        if p.x in kept:
            older, newer = sorted([kept[p.x], p], key=lambda q: q.timestamp)
            notes.append(f"{older.experiment} and {newer.experiment} share {p.value!r}: {newer.experiment} shown")
            p = newer
        kept[p.x] = p
    return sorted(kept.values(), key=lambda q: q.x), notes


def read_point(point: Point, files: dict[str, dict], metrics: list[str], layer_field: str | None) -> None:
    """Fill ``point`` from its metrics files (name -> parsed JSON)."""
    point.files = files
    for name in metrics:
        for data in files.values():
            if isinstance(data.get(name), int | float):
                point.metrics[name] = float(data[name])
                ci = data.get(f"{name}_ci")
                if isinstance(ci, list) and len(ci) == 2:
                    point.intervals[name] = [float(v) for v in ci]
                break
    if layer_field:
        for row in (files.get("probes") or {}).get("layers") or []:
            if layer_field in row:
                ci = {k: float(row[f"{layer_field}_{k}"]) for k in ("ci_low", "ci_high") if f"{layer_field}_{k}" in row}
                point.layers[int(row["layer"])] = {"value": float(row[layer_field]), **ci}


def _git_show(root: Path, path: str) -> str | None:
    shown = subprocess.run(["git", "show", path], cwd=root, capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else None


def stale_stages(lock: dict, params: dict) -> set[str]:
    """Stages whose recorded run no longer matches the commit: an upstream output changed
    since (its hash differs from the one the stage read) or a param it reads did. An
    experiment run up to ``report`` leaves the later stages' metrics from its baseline."""
    stages = lock.get("stages") or {}
    outs = {o["path"]: o.get("md5") for st in stages.values() for o in st.get("outs") or []}
    flat = _flat(params)
    stale = set()
    for name, st in stages.items():
        for dep in st.get("deps") or []:
            if dep["path"] in outs and outs[dep["path"]] != dep.get("md5"):
                stale.add(name)
        for key, value in ((st.get("params") or {}).get("params.yaml") or {}).items():
            now = flat.get(key, _flat(params.get(key, {}), key + ".") if isinstance(value, dict) else None)
            if now != (_flat(value, key + ".") if isinstance(value, dict) else value):
                stale.add(name)
    return stale


def git_metrics(root: Path, rev: str) -> dict[str, dict]:
    """Every ``metrics/*.json`` file as committed at ``rev``, except those whose stage's
    recorded run is stale there (``stale_stages``): those metrics belong to another run."""
    lock = yaml.safe_load(_git_show(root, f"{rev}:dvc.lock") or "{}") or {}
    stale = stale_stages(lock, yaml.safe_load(_git_show(root, f"{rev}:params.yaml") or "{}") or {})
    written_by = {o["path"]: name for name, st in (lock.get("stages") or {}).items() for o in st.get("outs") or []}
    listing = subprocess.run(
        ["git", "ls-tree", "--name-only", f"{rev}:{METRICS_DIR}"], cwd=root, capture_output=True, text=True
    )
    files = {}
    for name in listing.stdout.split():
        path = f"{METRICS_DIR}/{name}"
        if name.endswith(".json") and written_by.get(path) not in stale:
            text = _git_show(root, f"{rev}:{path}")
            if text is not None:
                files[name.removesuffix(".json")] = _json(text, f"{rev[:7]}:{path}")
    return files


def collect(
    listing: list[dict],
    param: str,
    metrics: list[str],
    layer_field: str | None,
    read: Callable[[str], dict[str, dict]],
    where: dict[str, Any] | None = None,
) -> tuple[list[Point], list[str]]:
    """The plotted points (sorted by x) and notes on what was left out."""
    skipped: list[str] = []
    found, notes = place(entries(listing, param, where, skipped))
    notes = skipped + notes
    points = []
    for p in found:
        files = read(p.rev)
        if not files:
            notes.append(f"{p.experiment}: no {METRICS_DIR}/*.json in its commit (left out)")
            continue
        read_point(p, files, metrics, layer_field)
        points.append(p)
    if not points:
        among = f" with {', '.join(f'{k}={v}' for k, v in where.items())}" if where else ""
        raise UserError(f"no committed experiment{among} has the param {param!r} and metrics (see `dvc exp show`)")
    missing = [m for m in metrics if not any(m in p.metrics for p in points)]
    if missing:
        raise UserError(f"no experiment has the metric {missing[0]!r} (see `dvc metrics show`)")
    if layer_field and not any(p.layers for p in points):
        raise UserError(f"no experiment has the per-layer field {layer_field!r} in {METRICS_DIR}/probes.json")
    return points, notes


def balanced_baseline(point: Point) -> float | None:
    """The position-only baseline's balanced accuracy: what balanced accuracy is read against."""
    for row in point.probes.get("baselines") or []:
        if row.get("baseline") == "position_only" and isinstance(row.get("balanced_accuracy"), int | float):
            return float(row["balanced_accuracy"])
    return None


def figure(points: list[Point], param: str, metrics: list[str], layer_field: str | None, title: str) -> Figure:
    """Lines against the param; 95% intervals as bands; each baseline dashed, labelled with the
    metric it is read against (``balanced`` gets the position baseline's balanced accuracy)."""
    fig, ax = plt.subplots(figsize=(9, 4.5), layout="constrained")
    numeric = all(isinstance(p.x, float) for p in points)
    xs = np.array([p.x for p in points], dtype=float) if numeric else np.arange(len(points), dtype=float)
    layers = sorted({k for p in points for k in p.layers})
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(layers)))
    for color, layer in zip(colors, layers, strict=True):
        have = [i for i, p in enumerate(points) if layer in p.layers]
        rows = [points[i].layers[layer] for i in have]
        ax.plot(xs[have], [r["value"] for r in rows], "o-", color=color, ms=3, lw=1.2, label=f"layer {layer}")
        if all("ci_low" in r for r in rows):
            ax.fill_between(xs[have], [r["ci_low"] for r in rows], [r["ci_high"] for r in rows], color=color, alpha=0.2)
    styles = iter(["s-", "^-", "d-", "v-"])
    for name in metrics:
        have = [i for i, p in enumerate(points) if name in p.metrics]
        ys = [points[i].metrics[name] for i in have]
        if name in BASELINES:
            ax.plot(xs[have], ys, "k--", lw=1.5, label=f"{name} (baseline of {BASELINES[name]})")
            continue
        ax.plot(xs[have], ys, next(styles, "o-"), ms=4, lw=1.2, label=f"{name} (best layer)" if layer_field else name)
        if all(name in points[i].intervals for i in have):
            lo, hi = zip(*(points[i].intervals[name] for i in have), strict=True)
            ax.fill_between(xs[have], lo, hi, color="grey", alpha=0.15)
        if name == "balanced":
            base = [(x, b) for x, b in zip(xs[have], (balanced_baseline(points[i]) for i in have), strict=True) if b]
            if base:
                ax.plot(*zip(*base, strict=True), "k:", lw=1.5, label="position_only, balanced (baseline of balanced)")
    if numeric and len(xs) > 1 and xs.min() > 0 and xs.max() / xs.min() > 20:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(xs, [str(p.x) for p in points], rotation=30, ha="right")
    ax.set_xlabel(param + (" (training step)" if numeric and any(STEP.fullmatch(str(p.value)) for p in points) else ""))
    ax.set_ylabel(layer_field or "metric")
    ax.set_title(textwrap.fill(title, 60))  # a long title wraps above the axes, clear of the legend
    ax.grid(alpha=0.3)
    fig.legend(fontsize=8, loc="outside right upper")
    return fig


def by_layer(points: list[Point], param: str, layer_field: str, title: str) -> Figure:
    """A categorical param: ``layer_field`` by layer, one line per value, 95% intervals as bands."""
    fig, ax = plt.subplots(figsize=(9, 4.5), layout="constrained")
    for i, p in enumerate(points):
        layers = sorted(p.layers)
        values = [p.layers[k]["value"] for k in layers]
        ax.plot(layers, values, marker="os^dvP*X"[i % 8], color=f"C{i}", label=f"{param}={p.x}")
        if all("ci_low" in p.layers[k] for k in layers):
            lo = [p.layers[k]["ci_low"] for k in layers]
            ax.fill_between(layers, lo, [p.layers[k]["ci_high"] for k in layers], color=f"C{i}", alpha=0.2, lw=0)
        best = max(p.probes.get("baselines") or [], key=lambda b: b.get(layer_field, -1), default=None)
        if best is not None and layer_field in best:  # the value's own best baseline, dashed in its colour
            ax.axhline(best[layer_field], color=f"C{i}", ls="--", lw=1)
    if any(line.get_linestyle() == "--" for line in ax.get_lines()):
        ax.plot([], [], color="grey", ls="--", label="dashed: each one's best baseline")
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel(layer_field)
    ax.set_xticks(sorted({k for p in points for k in p.layers}))
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(textwrap.fill(title, 60))
    fig.legend(fontsize=8, loc="outside right upper")
    return fig


def table(points: list[Point], param: str) -> str:
    """One Markdown row per value of the param, from each experiment's metrics/probes.json."""

    def num(x: object, fmt: str = ".3f") -> str:
        return format(x, fmt) if isinstance(x, int | float) else "-"

    lines = [
        f"| {param} | best layer | accuracy [95% CI] | balanced [95% CI] | best baseline: accuracy / balanced "
        "| position-shuffled control | count vs countdown | R² [95% CI] vs best baseline |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        m = p.probes
        ci, bci = m.get("accuracy_ci") or [None, None], m.get("balanced_ci") or [None, None]
        bases = m.get("baselines") or []
        top = max(bases, key=lambda b: b.get("accuracy", 0)) if bases else {}
        top_balanced = max((b.get("balanced_accuracy", 0) for b in bases), default=None)
        layer_row = next((r for r in m.get("layers") or [] if r.get("layer") == m.get("best_layer")), {})
        verdicts = ", ".join(f"{v['n_units']}: {v['verdict']}" for v in m.get("count_verdicts") or []) or "-"
        r2 = "-"
        if "r2" in m:
            base = (m.get("r2_baselines") or [None])[0]
            r2 = f"{num(m['r2'])} [{num(m['r2_ci'][0])}, {num(m['r2_ci'][1])}] vs {num(base)}"
        lines.append(
            f"| `{p.value}` | {m.get('best_layer', '-')} | {num(m.get('accuracy'))} [{num(ci[0])}, {num(ci[1])}] "
            f"| {num(m.get('balanced'))} [{num(bci[0])}, {num(bci[1])}] "
            f"| {top.get('baseline', '-')} {num(top.get('accuracy'))} / {num(top_balanced)} "
            f"| {num(layer_row.get('position_control_accuracy'))} | {verdicts} | {r2} |"
        )
    return "\n".join(lines)


@dataclass
class Experiment:
    """One finished experiment: the params it changed against its baseline commit, and its metrics files."""

    name: str
    rev: str
    baseline: str
    timestamp: str
    changed: dict[str, Any]
    files: dict[str, dict] = field(default_factory=dict)


def experiments(listing: list[dict], read: Callable[[str], dict[str, dict]]) -> list[Experiment]:
    """Every finished experiment of the listed commits, oldest first, with what it changed."""
    found = []
    for commit in listing:
        if commit.get("rev") == "workspace":
            continue
        base = _flat(_params_of(commit))
        for group in commit.get("experiments") or []:
            if (group.get("executor") or {}).get("state") not in (None, "success"):
                continue
            for exp in group.get("revs") or []:
                if exp.get("error"):
                    continue
                data = exp.get("data") or {}
                params = _flat(_params_of(exp))
                changed = {k: v for k, v in params.items() if base.get(k) != v}
                rev = data.get("rev") or exp["rev"]
                name = exp.get("name") or rev[:7]
                label = commit.get("name") or commit["rev"][:7]
                found.append(Experiment(name, rev, label, data.get("timestamp") or "", changed, read(rev)))
    return sorted(found, key=lambda e: e.timestamp)


def experiments_table(found: list[Experiment]) -> str:
    """One Markdown row per experiment: what it changed, and its headline with intervals and controls."""

    def num(x: object, fmt: str = ".3f") -> str:
        return format(x, fmt) if isinstance(x, int | float) else "-"

    lines = [
        "| experiment | changed params | best layer | accuracy [95% CI] | position-balanced [95% CI] "
        "| best baseline | position-shuffled control | probe / word-type control, held-out "
        "| count vs countdown | stop-decision loss: probe subspace vs random |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in found:
        m, used = e.files.get("probes") or {}, e.files.get("interventions") or {}
        ci, bci = m.get("accuracy_ci") or [None, None], m.get("balanced_ci") or [None, None]
        top = max(m.get("baselines") or [{}], key=lambda b: b.get("accuracy", 0))
        row = next((r for r in m.get("layers") or [] if r.get("layer") == m.get("best_layer")), {})
        verdicts = ", ".join(f"{v['n_units']}: {v['verdict']}" for v in m.get("count_verdicts") or []) or "-"
        changed = ", ".join(f"`{k}={v}`" for k, v in e.changed.items()) or "-"
        loss = "-"
        if "loss_up_probe" in used:
            loss = f"{num(used['loss_up_probe'], '+.3f')} vs {num(used.get('loss_up_random'), '+.3f')}"
        lines.append(
            f"| {e.name} | {changed} | {m.get('best_layer', '-')} "
            f"| {num(m.get('accuracy'))} [{num(ci[0])}, {num(ci[1])}] "
            f"| {num(m.get('balanced'))} [{num(bci[0])}, {num(bci[1])}] "
            f"| {top.get('baseline', '-')} {num(top.get('accuracy'))} "
            f"| {num(row.get('position_control_accuracy'))} "
            f"| {num(row.get('heldout_accuracy'))} / {num(row.get('word_control_accuracy'))} "
            f"| {verdicts} | {loss} |"
        )
    return "\n".join(lines)


def output_paths(out: str | Path | None, param: str) -> tuple[Path, Path]:
    """PNG and JSON paths: ``out`` + suffix (default ``plots/compare/<param>``); the param's
    dots stay in the name (``model.revision.png``), never read as a suffix."""
    base = Path(out or f"plots/compare/{param}")
    return base.with_name(base.name + ".png"), base.with_name(base.name + ".json")


def as_json(points: list[Point], param: str, notes: list[str]) -> dict:
    return {
        "param": param,
        "points": [
            {
                "experiment": p.experiment,
                "rev": p.rev,
                "param_value": p.value,
                "x": p.x,
                "metrics": p.metrics,
                "intervals": p.intervals,
                "layers": {str(k): v for k, v in p.layers.items()},
                "files": p.files,
            }
            for p in points
        ],
        "left_out": notes,
    }
