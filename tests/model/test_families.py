"""The family matrix: tiny models of each family users bring, through every stage.

Each runs the real stage code (in this process: seconds per family) on a random-weight
model with a tokenizer of its family's style, from ``check`` to ``tokens``, then checks
what the pipeline stored against independent computations: the prompt text, the word
alignment and token strings against the tokenizer; every residual stream against a
plain Hugging Face forward pass; the head scores against Hugging Face's own eager
attention patterns, scored here in a few lines; the attribution parts against the probe
applied to the stored stream; and two causal invariants (ablating a head or block whose
output weights are zero changes nothing, patching a run into itself changes nothing).
docs/models.md's families table is what this matrix measured.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from emergent_pos.analysis.ablation import ablate, position_means
from emergent_pos.analysis.attribution import attribute
from emergent_pos.analysis.components import Layout
from emergent_pos.analysis.forward import PromptSet, donors, pad
from emergent_pos.analysis.measure import Task, measure
from emergent_pos.analysis.patching import Pairs, patch
from emergent_pos.api import Pipeline
from emergent_pos.config import ParamError
from emergent_pos.dataset.words import SEED_PREFIX
from emergent_pos.errors import UserError
from emergent_pos.io.cli import user_message
from emergent_pos.model.arch import UnsupportedModel
from emergent_pos.model.config import ModelConfig
from emergent_pos.model.hooks import capture, residual_hooks
from emergent_pos.model.hub import ModelUnavailable, check_available
from emergent_pos.model.load import context_length, load_bridge
from emergent_pos.probes.linear import load_probes
from families import FAMILIES, PREPEND_BOS, build_family
from helpers import REPO, no_hooks, run_stage_in_process, write_params

STAGES = ("check", "model", "dictionary", "prompts", "activations", "probes")
MECHANISM = ("report", "heads", "attribution", "interventions", "tokens")
N_COMPARED = 4  # prompts run through Hugging Face per family
N_PROMPTS = 6  # prompts of each mechanism stage
FAMILIES_TABLE = re.compile(r"<!-- families-table -->\n(.*?)<!-- /families-table -->", re.S)


def _workdir(root: Path) -> Path:
    work = root / "work"
    work.mkdir()
    shutil.copytree(REPO / "stages", work / "stages")
    shutil.copytree(REPO / "texts", work / "texts")
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
            "eval_n_units": [],
            "same_length_control": False,
            "prepend_bos": prepend_bos,
        },
        probe={"max_iter": 50, "position_control": False, "word_control": False},
        report={"layers": [1]},
        heads={"n_prompts": N_PROMPTS, "top_k": 1, "n_examples": 1},
        attribution={"n_prompts": N_PROMPTS},
        interventions={"n_prompts": N_PROMPTS, "n_random": 2, "n_pairs": 4, "patch_tokens": 3, "patch_layer": 1},
        tokens={"texts": ["\nWhen the rain stopped, the children ran"], "layers": [1]},
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


def _hf_head_scores(model_dir: Path, prompts: list, bos: bool) -> dict[str, np.ndarray]:
    """Three of the heads stage's scores from Hugging Face's eager attention, computed here from
    the prompts table's word columns: ``[layer, head]`` mean attention of every word token on
    its word's first token, on the previous word's last token, and on position 0 (BOS)."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager").eval()
    sums = {"own_unit_start": 0.0, "prev_unit_end": 0.0, "bos": 0.0}
    counts = dict.fromkeys(sums, 0)
    for prompt in prompts:
        with torch.inference_mode():
            att = model(torch.tensor([prompt.token_id.tolist()]), output_attentions=True).attentions
        pattern = torch.stack([a[0] for a in att]).numpy()  # [layer, head, q, k]
        wi, tiw = prompt.word_index.to_numpy(), prompt.token_in_word.to_numpy()
        for q in np.flatnonzero(wi >= 0):
            w = wi[q]
            sums["own_unit_start"] = sums["own_unit_start"] + pattern[:, :, q, q - tiw[q]]
            counts["own_unit_start"] += 1
            if w > 0:
                sums["prev_unit_end"] = sums["prev_unit_end"] + pattern[:, :, q, q - tiw[q] - 1]
                counts["prev_unit_end"] += 1
            if bos:
                sums["bos"] = sums["bos"] + pattern[:, :, q, 0]
                counts["bos"] += 1
    return {k: sums[k] / counts[k] for k in sums if counts[k]}


def _zero_first_writer(bridge) -> str:
    """Zero the output weights of block 0's first head (or, without heads, its whole mixer);
    returns that component's name. Checked through the bridge's own W_O."""
    block = bridge.blocks[0]
    if hasattr(block, "attn"):
        out = block.attn.o.original_component
        d_head = bridge.cfg.d_head
        with torch.no_grad():
            if isinstance(out, torch.nn.Linear):  # weight [d_model, heads * d_head]
                out.weight[:, :d_head] = 0.0
            else:  # GPT-2's Conv1D: [heads * d_head, d_model]
                out.weight[:d_head] = 0.0
        assert block.attn.W_O[0].abs().max() == 0
        return "L0H0"
    with torch.no_grad():
        for param in block.mixer.out_proj.original_component.parameters():
            param.zero_()
    return "L0.mixer"


def _mechanism_invariants(work: Path, name: str, ps: PromptSet, n_layers: int) -> None:
    """Ablating a component that writes zeros changes nothing (one that writes does change the
    run), and patching a run into itself changes nothing, on this family's own hook points."""
    bridge = load_bridge(work / "data/model", "cpu")
    probes = load_probes(n_layers, root=work / "data/probes")
    task = Task.build(ps, None, bridge.tokenizer, probes, 7)
    zeroed = _zero_first_writer(bridge)
    comps = {c.name: c for c in Layout.read(bridge).components()}
    clean = measure(bridge, task, no_hooks)
    writer = next(c for c in comps.values() if c.ablatable and c.name != zeroed)
    means = position_means(bridge, task, [comps[zeroed], writer])
    final = residual_hooks(n_layers)[-1]
    tokens = pad(ps.tokens)
    stream = capture(bridge, tokens, [final])[final]
    for c, changes in ((comps[zeroed], False), (writer, True)):
        for how in ("mean", "resample"):
            edit = [
                (c.hook, ablate(c, how, means, donors(np.array([len(t) for t in ps.tokens]), np.random.default_rng(1))))
            ]
            moved = float(
                (capture(bridge, tokens, [final], edits=edit)[final] - stream).abs().max() / stream.abs().max()
            )
            assert (moved > 1e-5) if changes else (moved < 1e-6), f"{name}: {how}-ablating {c.name}: {moved:.2g}"
            if not changes:  # the stage's own measurement sees no change either
                out = measure(bridge, task, lambda i, n, edit=edit: edit)
                np.testing.assert_allclose(out.loss, clean.loss, rtol=1e-6, err_msg=f"{name}: {c.name} {how}")
    seqs = [ps.tokens[i][: ps.start(0) + 3] for i in range(3)]
    same = Pairs(pad(seqs), pad(seqs), np.zeros(3, dtype=int), np.ones(3, dtype=int), ps.start(0))
    patched = [c for c in comps.values() if c.kind == "embed" or c.ablatable]
    gain, full, _ = patch(bridge, same, probes[n_layers], n_layers, patched)
    np.testing.assert_allclose(gain, 0.0, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(full, 0.0, atol=1e-5, err_msg=name)


def _stage_cell(work: Path, stage: str) -> str:
    path = {"heads": "data/heads/heads.json", "attribution": "data/attribution/attribution.json"}.get(
        stage, "data/interventions/summary.json" if stage == "interventions" else None
    )
    if path is None:
        return "runs"
    return "runs" if json.loads((work / path).read_text())["applies"] else "does not apply"


def families_table_rows() -> dict[str, str]:
    """docs/models.md's families table, by family (the part between the markers)."""
    match = FAMILIES_TABLE.search((REPO / "docs/models.md").read_text())
    assert match, "docs/models.md has no families table between <!-- families-table --> markers"
    rows = [line for line in match.group(1).splitlines() if line.startswith("| `")]
    return {line.split("`")[1]: line for line in rows}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_runs_every_stage_and_matches_hugging_face(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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
    for stage in STAGES[3:] + MECHANISM:
        run_stage_in_process(work, stage)

    card = json.loads((work / "data/model/model_card.json").read_text())
    assert card["n_layers"] == 2 and card["attention"] == (name != "mamba")
    assert (card["n_ctx"] is None) == (name in ("mamba", "bloom"))  # no positional limit
    tok = AutoTokenizer.from_pretrained(work / "data/model")
    pipe = Pipeline.open(work)
    table = pipe.tokens("val")
    prompts = [g for _, g in table.groupby("prompt_id", sort=True)]
    for prompt in prompts[:N_COMPARED]:
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
    for prompt in prompts[:N_COMPARED]:
        rows = slice(start, start + len(prompt))
        start += len(prompt)
        want = _hf_streams(work / "data/model", prompt.token_id.tolist(), card["n_layers"])
        for hook, expected in zip(hooks, want, strict=True):
            np.testing.assert_allclose(stored[hook][rows], expected, rtol=1e-4, atol=1e-4, err_msg=f"{name} {hook}")
    fits = json.loads((work / "data/probes/fits.json").read_text())
    assert [fit["hook"] for fit in fits["layers"].values()] == hooks
    assert pipe.probe(len(hooks) - 1).predict(stored[hooks[-1]]).shape == (len(table),)
    assert (work / "metrics/probes.json").exists() and (work / "data/tokens/tokens.parquet").exists()

    # heads: Hugging Face's eager attention, scored here, against the stage's scores
    heads = json.loads((work / "data/heads/heads.json").read_text())
    assert heads["applies"] == card["attention"]
    if card["attention"]:
        main = [g for g in prompts if g.prefix_id.iloc[0] == 0][:N_PROMPTS]
        want = _hf_head_scores(work / "data/model", main, PREPEND_BOS[name])
        for row in heads["heads"]:
            for score, values in want.items():
                got = row[score]["observed"]
                assert got == pytest.approx(float(values[row["layer"], row["index"]]), abs=1e-5), (name, row["head"])
    else:
        assert "attention" in heads["reason"] and (work / "plots/heads/scores.png").exists()

    # attribution: the stage's identity, and the parts against the probes on the stored stream
    att = json.loads((work / "data/attribution/attribution.json").read_text())
    assert att["applies"] and max(v["identity_error"] for v in att["layers"].values()) < 1e-3
    ps = PromptSet.from_table(table, 7, 3)
    probes = load_probes(card["n_layers"], root=work / "data/probes")
    bridge = load_bridge(work / "data/model", "cpu")
    parts = attribute(bridge, ps, probes, Layout.read(bridge))
    ends = np.concatenate([ps.rows[i][ps.probed(i)] for i in range(len(ps))])
    for j, layer in enumerate(parts.layers):
        direct = probes[layer].decision_function(stored[hooks[layer]][ends])
        rebuilt = parts.per_index[:, j].astype(np.float64).sum(1) + parts.constant[j]
        np.testing.assert_allclose(rebuilt, direct, rtol=1e-3, atol=1e-3 * np.abs(direct).max(), err_msg=name)

    summary = json.loads((work / "data/interventions/summary.json").read_text())
    assert summary["applies"] and summary["readout_error"] < 1e-4
    _mechanism_invariants(work, name, ps, card["n_layers"])

    cells = [_stage_cell(work, stage) for stage in ("heads", "attribution", "interventions", "tokens")]
    row = re.split(r"(?<!\\)\|", families_table_rows().get(name, ""))  # cells; `\|` is a pipe inside one
    assert [c.strip() for c in row[4:8]] == cells, f"docs/models.md's row for {name} must say: {cells}"


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
