"""The organism's corpus: sequences that need a word count to place the full stop."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from emergent_pos.dataset.words import SEED_PREFIX, source_words
from emergent_pos.model.config import ToyConfig
from emergent_pos.model.organism import Corpus
from helpers import TINY_TOY


def test_every_announced_block_holds_the_count_its_header_names(tiny_model_dir: Path) -> None:
    """Decode sequences and recount each announced block by its scheme's rule (the last,
    cut by ``seq_len``, is left out): the header's number is what the model must count to."""
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = ToyConfig(**{**TINY_TOY, "seq_len": 512})
    words, _ = source_words("wordfreq", cfg.n_source_words)
    corpus = Corpus.build(tok, words, SEED_PREFIX, cfg)
    assert corpus.prefix[0] == tok.bos_token_id and tok.decode(corpus.prefix[1:]) == SEED_PREFIX
    assert corpus.batch(np.random.default_rng(0), cfg).shape == (cfg.batch_size, cfg.seq_len)
    seen: dict[str, int] = {}
    for seed in range(6):
        text = tok.decode(corpus.sequence(np.random.default_rng(seed), cfg)).removeprefix(tok.bos_token)
        parts = re.split(r"\n(\d+)([:.,|~])\nWhen", text)
        for k, sym, body in zip(parts[1:-3:3], parts[2:-3:3], parts[3:-3:3], strict=True):
            k = int(k)
            seen[sym] = seen.get(sym, 0) + 1
            if sym == ":":  # words: every sentence of the paragraph has k words
                assert body.endswith(".")
                assert all(len(s.split()) == k for s in body.removesuffix(".").split(". When"))
            elif sym == ".":  # sentences: k full stops
                assert body.endswith(".") and body.count(".") == k
            elif sym == ",":  # items: k comma-separated items after the colon
                assert body.startswith(":") and body.endswith(".") and len(body.split(",")) == k
            elif sym == "|":  # lines: k lines, each ended by a newline
                assert body.startswith("\n") and body.endswith("\n") and body.count("\n") == k + 1
            else:  # chars: greedy wrapping at width k
                assert body.startswith("\n") and body.endswith("\n")
                lines = body[1:-1].split("\n")
                for line, after in zip(lines, lines[1:], strict=False):
                    assert len(line) <= k < len(line) + 1 + len(after.split()[0])
    assert set(seen) == {":", ".", ",", "|", "~"}  # every scheme occurs


def test_a_toy_revision_is_the_full_runs_checkpoint_at_that_step() -> None:
    """``model.revision: stepN`` stops the same run after N steps: the model it returns
    scores the full run's batch N with exactly the loss the full run logged at step N."""
    import torch

    from emergent_pos.config import ParamError
    from emergent_pos.model.config import ModelConfig
    from emergent_pos.model.corpus import fixed_texts
    from emergent_pos.model.organism import train_organism, train_tokenizer

    cfg = ToyConfig(**{**TINY_TOY, "steps": 6, "batch_size": 4, "seq_len": 32})
    words, freqs = source_words("wordfreq", cfg.n_source_words)
    _, _, full = train_organism(words, freqs, SEED_PREFIX, cfg, seed=0)
    assert [row["step"] for row in full] == list(range(6))
    model, _, prefix = train_organism(words, freqs, SEED_PREFIX, cfg, seed=0, stop_after=3)
    assert prefix == full[:3]
    tok = train_tokenizer(words, freqs, fixed_texts(SEED_PREFIX, cfg), cfg.vocab_size)
    corpus = Corpus.build(tok, words, SEED_PREFIX, cfg)
    rng = np.random.default_rng(0)
    batch = [corpus.batch(rng, cfg) for _ in range(4)][-1]
    with torch.no_grad():
        loss = model.train()(batch, labels=batch).loss.item()
    assert loss == pytest.approx(full[3]["loss"], rel=1e-6)
    assert ModelConfig(revision="step3").toy_steps(cfg) == 3 and ModelConfig().toy_steps(cfg) == 6
    for bad in ("step7", "v1", "step-1"):
        with pytest.raises(ParamError, match="model.revision"):
            ModelConfig(revision=bad).toy_steps(cfg)
    with pytest.raises(ParamError, match="random-init organism has no training steps"):
        ModelConfig(init="random", revision="step3").toy_steps(cfg)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_each_organism_family_trains_has_the_budgeted_size_and_boots_in_transformer_lens(
    arch: str, tmp_path: Path
) -> None:
    """``toy.arch``: the parameter count the memory check uses before training is the built
    model's, and the trained organism is saved only once TransformerLens runs it."""
    from emergent_pos.model.build import save_model
    from emergent_pos.model.config import ModelConfig
    from emergent_pos.model.organism import toy_parameters, train_organism

    cfg = ToyConfig(**{**TINY_TOY, "arch": arch, "steps": 2, "batch_size": 2, "seq_len": 32})
    words, freqs = source_words("wordfreq", cfg.n_source_words)
    model, tok, curve = train_organism(words, freqs, SEED_PREFIX, cfg, seed=0)
    assert toy_parameters(cfg, len(tok)) == model.num_parameters() and len(curve) == 2
    card = save_model(model, tok, ModelConfig(), seed=0, out=tmp_path / "model")
    assert card["architecture"] == {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}[arch]
    assert card["n_layers"] == cfg.n_layers and card["d_model"] == cfg.d_model
