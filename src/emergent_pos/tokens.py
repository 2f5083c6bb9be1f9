"""Apply a finished pipeline's probes to any text: ``python -m emergent_pos.tokens "some text" --layer 1``.

Prints one row per token: its position, the token, the label (the unit index of the
scheme the probes were trained on) the layer's probe predicts there and that
prediction's probability. Run it in a pipeline directory (or
pass ``--root``); it reads data/model, data/probes, data/prompts and params.yaml's
``activations.processing`` (the numerics the probes were trained on), offline.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from emergent_pos.activations.config import ActivationsConfig
from emergent_pos.analysis.tokens import encode, predict_tokens, table, uses_bos
from emergent_pos.config import ParamError, key, read_params
from emergent_pos.dataset.prompts import prompt_token_ids, prompts_path
from emergent_pos.io.cli import print_one_line
from emergent_pos.io.files import read_parquet
from emergent_pos.model.load import load_bridge, read_card
from emergent_pos.model.placement import PLACEMENT_ENV, parse_placement
from emergent_pos.probes.linear import load_probes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emergent_pos.tokens", description=__doc__.splitlines()[0])
    parser.add_argument("text", help="the text whose tokens are read out")
    parser.add_argument(
        "--layer", type=int, action="append", help="layer to show (0 = embeddings; repeatable; default: all)"
    )
    parser.add_argument("--root", type=Path, default=Path("."), help="the pipeline directory (default: here)")
    parser.add_argument("--device", default=os.environ.get("EMERGENT_POS_DEVICE", "auto"), help="auto | cpu | cuda[:N]")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        root = args.root
        card = read_card(root / "data/model")
        n_layers = card["n_layers"]
        layers = args.layer or list(range(n_layers + 1))
        bad = [layer for layer in layers if not 0 <= layer <= n_layers]
        if bad:
            raise ParamError("--layer", bad[0], f"layers are 0..{n_layers} for {card['name']}")
        processing = key(read_params(root / "params.yaml"), "activations.processing", ActivationsConfig)
        placement = parse_placement(os.environ.get(PLACEMENT_ENV, "auto"), args.device)
        bridge = load_bridge(root / "data/model", placement, processing)
        first = prompt_token_ids(
            read_parquet(prompts_path("val", root / "data/prompts"), columns=["position", "token_id"])
        )[0]
        ids = encode(bridge.tokenizer, args.text, uses_bos(first, bridge.tokenizer))
        df = predict_tokens(bridge, load_probes(n_layers, layers, root / "data/probes"), ids)
        print("\n\n".join(table(df, layer) for layer in layers))
    except Exception as err:
        print_one_line(err)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
