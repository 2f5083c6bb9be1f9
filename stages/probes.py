"""Stage `probes`: a logistic-regression probe per residual stream, baselines and two controls
(and, for an ordinal scheme such as char_in_line, a ridge regression beside it).

Writes the probes, their validation predictions and fit facts to data/probes/; the
report stage turns them into metrics. Run-time knobs (environment, not params: they do
not change results): EMERGENT_POS_DEVICE (auto | cpu | cuda[:N]) for the torch
backend, and EMERGENT_POS_PROBE_JOBS (worker processes for scikit-learn fits; default
one per core for single-threaded solvers on fits big enough to repay a worker's start-up).
"""

import dataclasses
import json
import logging
import os

from emergent_pos.activations.store import ACTIVATIONS_DIR, check_meta, hook_path
from emergent_pos.config import read_params, section
from emergent_pos.dataset.prompts import PROMPTS_DIR, SPLITS, prompts_path
from emergent_pos.io.cli import PARAMS, env_int, run
from emergent_pos.io.files import read_parquet, write_json, write_parquet
from emergent_pos.model.hooks import residual_hooks
from emergent_pos.model.load import read_card
from emergent_pos.model.placement import resolve_device
from emergent_pos.probes.config import ProbeConfig
from emergent_pos.probes.predictions import FITS, HELDOUT_PREDICTIONS, PREDICTIONS, PROBES_DIR
from emergent_pos.probes.runner import Split, probe_layers

logger = logging.getLogger("stages.probes")


def main() -> None:
    cfg = section(read_params(PARAMS), "probe", ProbeConfig)
    card = read_card()
    hooks = residual_hooks(card["n_layers"])
    splits = {}
    for split in SPLITS:
        splits[split] = s = Split.load(prompts_path(split), ACTIVATIONS_DIR / split, cfg.token, cfg.char_bin)
        for hook in hooks:  # refuse mismatched inputs before fitting anything
            check_meta(hook_path(s.act_dir, hook), s.sha256, s.n_tokens, card["name"], s.points.rows)
    train, val, heldout = splits["train"], splits["val"], splits["heldout"]
    logger.info(
        "probing %d layers of %s: %d train, %d val and %d held-out points (%s token(s) of each unit%s); %s",
        len(hooks),
        card["name"],
        len(train.points),
        len(val.points),
        len(heldout.points),
        cfg.token,
        f", a ridge regression beside the classifier over counts in bins of {cfg.char_bin}" if train.ordinal else "",
        cfg,
    )
    device = resolve_device(os.environ.get("EMERGENT_POS_DEVICE", "auto")) if cfg.backend == "torch" else "cpu"
    jobs = env_int("EMERGENT_POS_PROBE_JOBS", 1) if "EMERGENT_POS_PROBE_JOBS" in os.environ else None
    results = probe_layers(train, val, hooks, cfg, PROBES_DIR, device, jobs, heldout)
    write_parquet(PROBES_DIR / PREDICTIONS, results.val)
    write_parquet(PROBES_DIR / HELDOUT_PREDICTIONS, results.heldout)
    write_json(
        PROBES_DIR / FITS,
        {
            "model": card["name"],
            "init": card["init"],
            "token": cfg.token,
            "config": dataclasses.asdict(cfg),
            "n_train": len(train.points),
            "scheme": str(read_parquet(prompts_path("train"), columns=["scheme"]).scheme.iloc[0]),
            "ordinal": train.ordinal,
            "char_bin": cfg.char_bin if train.ordinal else None,
            "n_units": int(train.points.n_units[0]),
            "prefixes": json.loads((PROMPTS_DIR / "summary.json").read_text())["prefixes"],
            "layers": {str(layer): {"hook": hooks[layer], **info} for layer, info in results.facts.items()},
        },
    )


if __name__ == "__main__":
    run(main)
