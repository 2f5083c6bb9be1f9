"""The tokens command and function agree with the probes stage's stored predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emergent_pos.analysis.tokens import encode, predict_tokens
from emergent_pos.dataset.prompts import prompt_token_ids, prompts_path
from emergent_pos.io.files import read_parquet
from emergent_pos.probes.linear import load_probes
from emergent_pos.probes.predictions import PREDICTIONS
from emergent_pos.tokens import main as tokens_main


def a_retokenizing_prompt(project: Path, tokenizer) -> tuple[int, str, np.ndarray]:
    """A main-set validation prompt whose decoded text tokenizes back to its ids."""
    table = read_parquet(prompts_path("val", project / "data/prompts"))
    main = table[(table.prefix_id == 0) & (table.n_units == 7)]
    for pid, ids in zip(main.prompt_id.unique(), prompt_token_ids(main), strict=True):
        text = tokenizer.decode(ids[1:])
        if encode(tokenizer, text, bos=True) == [int(i) for i in ids]:
            return int(pid), text, ids
    raise AssertionError("no validation prompt retokenizes exactly")


def test_function_and_command_equal_the_stored_predictions(
    tiny_project: Path, tiny_bridge, capsys: pytest.CaptureFixture
) -> None:
    pid, text, ids = a_retokenizing_prompt(tiny_project, tiny_bridge.tokenizer)
    pred = read_parquet(tiny_project / "data/probes" / PREDICTIONS)
    stored = pred[(pred.prompt_id == pid) & (pred.layer == 1)].sort_values("position")
    df = predict_tokens(tiny_bridge, load_probes(2, [1], tiny_project / "data/probes"), [int(i) for i in ids])
    at_ends = df.set_index("position").loc[stored.position.to_numpy()]
    np.testing.assert_array_equal(at_ends.predicted.to_numpy(), stored.probe.to_numpy())

    # the command's code, in this process (`python -m emergent_pos.tokens` runs this main)
    assert tokens_main([text, "--layer", "1", "--root", str(tiny_project), "--device", "cpu"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:] if line.strip()]
    printed = {int(r[0]): int(r[-2]) for r in rows}
    assert len(printed) == len(ids)
    assert [printed[p] for p in stored.position] == stored.probe.tolist()


def test_command_fails_in_one_line_on_a_bad_layer(tiny_project: Path, capsys: pytest.CaptureFixture) -> None:
    assert tokens_main(["a b c", "--layer", "9", "--root", str(tiny_project)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: bad parameter --layer=9") and "Traceback" not in err
