"""The family matrix: tiny models of each family users bring, through model -> probes.

Each runs the real stage code (in this process: seconds per family) on a random-weight
model with a tokenizer of its family's style, then checks what the pipeline stored
against the tokenizer and a plain Hugging Face forward pass: the prompt text, the word
alignment and token strings, and every residual stream.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from emergent_pos.api import Pipeline
from emergent_pos.config import ParamError
from emergent_pos.dataset.words import SEED_PREFIX
from emergent_pos.errors import UserError
from emergent_pos.io.cli import user_message
from emergent_pos.model.arch import UnsupportedModel
from emergent_pos.model.config import ModelConfig
from emergent_pos.model.hooks import residual_hooks
from emergent_pos.model.hub import ModelUnavailable, check_available
from emergent_pos.model.load import context_length
from families import FAMILIES, PREPEND_BOS, build_family
from helpers import REPO, run_stage_in_process, write_params

STAGES = ("check", "model", "dictionary", "prompts", "activations", "probes")
N_COMPARED = 4  # prompts run through Hugging Face per family


def _workdir(root: Path) -> Path:
    work = root / "work"
    work.mkdir()
    shutil.copytree(REPO / "stages", work / "stages")
    shutil.copy2(REPO / "dvc.yaml", work / "dvc.yaml")
    return work


def _params(work: Path, model_dir: Path, prepend_bos: bool) -> None:
    write_params(
        work / "params.yaml",
        model={"name": str(model_dir)},
        prompts={
            "n_train": 24,
            "n_val": 12,
            "n_heldout": 6,
            "eval_n_words": [],
            "same_length_control": False,
            "prepend_bos": prepend_bos,
        },
        probe={"max_iter": 50, "position_control": False, "word_control": False},
    )


def _hf_streams(model_dir: Path, ids: list[int], n_layers: int) -> list[np.ndarray]:
    """Input of the first block and output of every block, by PyTorch hooks on the decoder
    layers (not ``hidden_states``: the last has the final norm applied, and Mamba's first
    is not the block input)."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager").eval()
    blocks = next(m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n_layers)
    got: list[torch.Tensor] = []

    def first(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        got.append(args[0] if args else kwargs["hidden_states"])

    def out(module: torch.nn.Module, args: tuple, output: object) -> None:
        got.append(output[0] if isinstance(output, tuple) else output)

    handles = [blocks[0].register_forward_pre_hook(first, with_kwargs=True)]
    handles += [b.register_forward_hook(out) for b in blocks]
    with torch.inference_mode():
        model(torch.tensor([ids]))
    for h in handles:
        h.remove()
    return [g[0].float().numpy() for g in got]


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_runs_and_matches_hugging_face(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMERGENT_POS_DEVICE", "cpu")
    model_dir = build_family(name, tmp_path / "hf")
    work = _workdir(tmp_path)
    _params(work, model_dir, PREPEND_BOS[name])
    for stage in STAGES[:3]:
        run_stage_in_process(work, stage)
    if not PREPEND_BOS[name]:  # no BOS token: the prompts stage says so, naming the key
        _params(work, model_dir, True)
        with pytest.raises(ParamError, match=r"prompts\.prepend_bos.*no BOS token; set it to false"):
            run_stage_in_process(work, "prompts")
        _params(work, model_dir, False)
    for stage in STAGES[3:]:
        run_stage_in_process(work, stage)

    card = json.loads((work / "data/model/model_card.json").read_text())
    assert card["n_layers"] == 2 and card["attention"] == (name != "mamba")
    assert (card["n_ctx"] is None) == (name in ("mamba", "bloom"))  # no positional limit
    tok = AutoTokenizer.from_pretrained(work / "data/model")
    pipe = Pipeline.open(work)
    table = pipe.tokens("val")
    prompts = [g for _, g in table.groupby("prompt_id", sort=True)][:N_COMPARED]
    for prompt in prompts:
        ids = prompt.token_id.tolist()
        assert (ids[0] == tok.bos_token_id) == PREPEND_BOS[name]
        words = prompt[prompt.word_index >= 0].groupby("word_index").word.first().tolist()
        assert len(words) == 7 and prompt.is_word_end.sum() == 7
        assert tok.decode(ids, skip_special_tokens=True) == SEED_PREFIX + "".join(" " + w for w in words)
        for _, part in prompt[prompt.word_index >= 0].groupby("word_index"):
            word = part.word.iloc[0]
            assert part.token_in_word.tolist() == list(range(len(part))) == list(range(part.word_n_tokens.iloc[0]))
            if word.isascii():  # token strings keep the word's leading space, in every family
                assert "".join(part.token) == " " + word, (name, part.token.tolist())

    hooks = residual_hooks(card["n_layers"])
    stored = {h: pipe.activations(h, "val")[0] for h in hooks}
    start = 0
    for prompt in [g for _, g in table.groupby("prompt_id", sort=True)][:N_COMPARED]:
        rows = slice(start, start + len(prompt))
        start += len(prompt)
        want = _hf_streams(work / "data/model", prompt.token_id.tolist(), card["n_layers"])
        for hook, expected in zip(hooks, want, strict=True):
            np.testing.assert_allclose(stored[hook][rows], expected, rtol=1e-4, atol=1e-4, err_msg=f"{name} {hook}")
    fits = json.loads((work / "data/probes/fits.json").read_text())
    assert [fit["hook"] for fit in fits["layers"].values()] == hooks
    assert pipe.probe(len(hooks) - 1).predict(stored[hooks[-1]]).shape == (len(table),)
    if not card["attention"]:  # a state-space model: report and tokens run, the head stages refuse in one line
        for stage in ("report", "tokens"):
            run_stage_in_process(work, stage)
        assert (work / "metrics/probes.json").exists() and (work / "data/tokens/tokens.parquet").exists()
        with pytest.raises(UserError, match="no attention heads.*does not apply.*dvc repro report tokens"):
            run_stage_in_process(work, "heads")


def _persimmon(out: Path) -> Path:
    """A tiny model of an architecture TransformerLens 4 does not support."""
    import transformers

    config = transformers.PersimmonConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    config.architectures = ["PersimmonForCausalLM"]  # as a hub repo's config.json says
    out.mkdir()
    config.save_pretrained(out)
    return out


def test_unsupported_architecture_fails_in_check_and_model_stage_in_one_line(
    tiny_model_dir: Path, workdir: Path, tmp_path: Path
) -> None:
    """Both stages refuse from the config, before weights load (a ``UserError``: the stage
    prints it as one ``error:`` line, tests/io/test_cli.py); `check` writes no marker."""
    model_dir = _persimmon(tmp_path / "persimmon")
    for path in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(tiny_model_dir / path, model_dir / path)
    write_params(workdir / "params.yaml", model={"name": str(model_dir)})
    for stage in ("check", "model"):
        with pytest.raises(UnsupportedModel) as err:
            run_stage_in_process(workdir, stage)
        message = str(err.value)
        assert "PersimmonForCausalLM" in message and "emergent-pos architectures" in message and "\n" not in message
        assert user_message(err.value) == message
    assert not (workdir / "data/params.ok").exists()


def test_unreadable_config_and_revision_of_a_directory_are_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ModelUnavailable, match="cannot read its config.json"):
        check_available(ModelConfig(name=str(bad)))
    with pytest.raises(ParamError, match="model.revision.*one version"):
        check_available(ModelConfig(name=str(bad), revision="step1000"))
    assert issubclass(ModelUnavailable, UserError) and issubclass(UnsupportedModel, UserError)


def test_context_length_reads_nested_text_configs_and_allows_none() -> None:
    import transformers

    nested = transformers.Gemma3Config(text_config={"max_position_embeddings": 4096})
    assert context_length(nested) == 4096
    assert context_length(transformers.MptConfig(max_seq_len=2048)) == 2048
    assert context_length(transformers.MambaConfig()) is None
    assert context_length(transformers.BloomConfig()) is None
