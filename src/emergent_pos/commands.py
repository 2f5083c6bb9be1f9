"""The `emergent-pos` command: the headline table and the per-token read-out, from a terminal.

    emergent-pos summary                 # README's headline table for this workspace
    emergent-pos summary --rev HEAD~1    # ... for a commit, branch or DVC experiment name
    emergent-pos tokens "some text" --layer 1

The pipeline itself runs with `dvc repro`; these commands only read what it wrote.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

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
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Exception as err:
        print_one_line(err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
