"""The `emergent-pos` command: the headline table and the per-token read-out, from a terminal.

    emergent-pos summary                 # README's headline table for this workspace
    emergent-pos summary --rev HEAD~1    # ... for a commit, branch or DVC experiment name
    emergent-pos tokens "some text" --layer 1
    emergent-pos compare model.revision --layers   # a metric against a param, across experiments
    emergent-pos experiments             # one row per experiment: what it changed, headline, controls
    emergent-pos architectures           # what TransformerLens can run (model.name)

The pipeline itself runs with `dvc repro`; these commands only read what it wrote.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

from emergent_pos.errors import UserError
from emergent_pos.io.cli import print_one_line

HEADER = (
    "| layer | hook | accuracy [95% CI] | position-balanced [95% CI] | position-shuffled control "
    "| probe / word-type control on held-out prompts | selectivity |\n"
    "|---|---|---|---|---|---|---|"
)


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "-" if x is None or pd.isna(x) else format(x, fmt)


def markdown(table: pd.DataFrame, best: int) -> str:
    """The headline table as README shows it (the best layer in bold)."""
    lines = [HEADER]
    for layer, r in table.iterrows():
        bold = "**" if layer == best else ""
        lines.append(
            f"| {layer} | `{r.hook}` "
            f"| {bold}{_num(r.accuracy)}{bold} [{_num(r.accuracy_ci_low)}, {_num(r.accuracy_ci_high)}] "
            f"| {bold}{_num(r.balanced_accuracy)}{bold} [{_num(r.balanced_ci_low)}, {_num(r.balanced_ci_high)}] "
            f"| {_num(r.position_control_accuracy)} "
            f"| {_num(r.heldout_accuracy)} / {_num(r.word_control_accuracy)} "
            f"| {_num(r.selectivity, '+.3f')} |"
        )
    return "\n".join(lines)


def summary(args: argparse.Namespace) -> int:
    from emergent_pos.api import Pipeline

    p = Pipeline(Path(args.root))
    head = p.metrics("probes", args.rev)
    print(markdown(p.summary(args.rev), head["best_layer"]))
    return 0


def tokens(args: argparse.Namespace) -> int:
    from emergent_pos.tokens import main as tokens_main

    argv = [args.text, "--root", args.root, "--device", args.device]
    for layer in args.layer or []:
        argv += ["--layer", str(layer)]
    return tokens_main(argv)


def compare(args: argparse.Namespace) -> int:
    os.environ.setdefault("MPLBACKEND", "Agg")  # a command draws off-screen; set before pyplot loads
    from emergent_pos import compare as cmp
    from emergent_pos.io.files import save_figure, write_json

    root = Path(args.root)
    metrics = args.metric or ["accuracy", "balanced", "position_only"]
    where = cmp.parse_where(args.where)
    listing = cmp.exp_show(root, args.all_commits)
    categorical = cmp.is_categorical(listing, args.param, where)
    field = args.layer_field if args.layers or categorical else None
    points, notes = cmp.collect(listing, args.param, metrics, field, lambda rev: cmp.git_metrics(root, rev), where)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    png, data = cmp.output_paths(args.out, args.param)
    write_json(data, cmp.as_json(points, args.param, notes))
    print(cmp.table(points, args.param))
    if categorical:
        title = args.title or f"{field} by layer, one line per {args.param}"
        save_figure(cmp.by_layer(points, args.param, field, title), png)
    else:
        layers = f" and per-layer {field}" if field else ""
        title = args.title or f"{', '.join(metrics)}{layers} vs {args.param}"
        save_figure(cmp.figure(points, args.param, metrics, field, title), png)
    print(f"{len(points)} experiments -> {png}, {data}")
    return 0


def experiments(args: argparse.Namespace) -> int:
    from emergent_pos import compare as cmp
    from emergent_pos.io.files import write_json

    root = Path(args.root)
    found = cmp.experiments(cmp.exp_show(root, args.all_commits), lambda rev: cmp.git_metrics(root, rev))
    if args.only:
        found = [e for e in found if e.name in args.only]
        missing = sorted(set(args.only) - {e.name for e in found})
        if missing:
            raise UserError(f"no finished experiment named {missing[0]!r} (see `dvc exp show`)")
    if not found:
        raise UserError("no finished experiment (run some with `dvc exp run`; see `dvc exp show`)")
    print(cmp.experiments_table(found))
    if args.out:
        write_json(Path(args.out), {"experiments": [vars(e) for e in found]})
    return 0


def architectures(args: argparse.Namespace) -> int:
    from emergent_pos.model.arch import supported_architectures, transformer_lens_version

    names = supported_architectures()
    version = transformer_lens_version()
    print(f"TransformerLens {version} runs {len(names)} architectures (config.json 'architectures'):")
    print("\n".join(names))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="emergent-pos", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("summary", help="print README's headline table (per layer: accuracy, controls, selectivity)")
    s.add_argument("--rev", help="a git revision or DVC experiment name (default: the workspace)")
    s.add_argument("--root", default=".", help="the pipeline directory (default: here)")
    s.set_defaults(func=summary)
    t = sub.add_parser("tokens", help="apply the probes to every token of a text")
    t.add_argument("text")
    t.add_argument("--layer", type=int, action="append", help="layer to show (repeatable; default: all)")
    t.add_argument("--root", default=".", help="the pipeline directory (default: here)")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    t.set_defaults(func=tokens)
    c = sub.add_parser("compare", help="plot metrics against a param across DVC experiments (PNG and JSON)")
    c.add_argument("param", help="a params.yaml key, e.g. model.revision, toy.steps, probe.C")
    c.add_argument(
        "--metric", action="append", help="a metric key (repeatable; default accuracy, balanced, position_only)"
    )
    c.add_argument("--layers", action="store_true", help="also one line per layer (metrics/probes.json's table)")
    c.add_argument("--layer-field", default="accuracy", help="per-layer column drawn by --layers (default accuracy)")
    c.add_argument("--out", help="output path without suffix, relative to here (default plots/compare/PARAM)")
    c.add_argument("--title", help="figure title")
    c.add_argument("--all-commits", action="store_true", help="experiments of every commit (dvc exp show -A)")
    c.add_argument(
        "--where", action="append", metavar="KEY=VALUE", help="only experiments with this param value (repeatable)"
    )
    c.add_argument("--root", default=".", help="the pipeline directory (default: here)")
    c.set_defaults(func=compare)
    e = sub.add_parser("experiments", help="one row per finished experiment: what it changed, its headline")
    e.add_argument("only", nargs="*", help="experiment names (default: every finished one of HEAD)")
    e.add_argument("--out", help="also write the rows and each one's metrics files as JSON here")
    e.add_argument("--all-commits", action="store_true", help="experiments of every commit (dvc exp show -A)")
    e.add_argument("--root", default=".", help="the pipeline directory (default: here)")
    e.set_defaults(func=experiments)
    a = sub.add_parser("architectures", help="list the architectures TransformerLens can run")
    a.set_defaults(func=architectures)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Exception as err:
        print_one_line(err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
