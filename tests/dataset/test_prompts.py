"""The prompt recipe: labels, uniform token lengths, split hygiene, context checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chisquare
from transformers import AutoTokenizer

from emergent_pos.config import ParamError
from emergent_pos.dataset.config import DictionaryConfig, PromptsConfig
from emergent_pos.dataset.dictionary import build_dictionary
from emergent_pos.dataset.prompts import (
    PrefixIds,
    build_prompts,
    check_fits,
    prompt_token_ids,
    retokenization_rate,
    same_length_prefix,
)
from emergent_pos.dataset.words import source_words


@pytest.fixture(scope="module")
def setup(tiny_model_dir: Path) -> tuple:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    words, _ = source_words("wordfreq", 2000)
    train, val = build_dictionary(words, tok, DictionaryConfig(n_words=2000), seed=0)
    cfg = PromptsConfig(n_train=300, n_val=200)
    return tok, train, val, cfg, build_prompts(train, val, tok, cfg, 3, seed=0)


def test_table_is_consistent(setup: tuple) -> None:
    tok, train, val, cfg, tables = setup
    prefix = PrefixIds.build(tok, cfg)
    for split, n in (("train", cfg.n_train), ("val", cfg.n_val), ("heldout", cfg.n_heldout)):
        df = tables[split]
        df = df[df.n_words == cfg.n_words]  # the main set (validation also holds other lengths)
        assert df.prompt_id.nunique() == n
        assert df.is_word_end.sum() == n * cfg.n_words == df.is_word_start.sum()
        for ids in prompt_token_ids(df)[:20]:
            assert list(ids[: len(prefix.ids)]) == prefix.ids
        assert ids[0] == tok.bos_token_id
        words = df[df.word_index >= 0]
        # each word's tokens are contiguous and spell " " + word
        for (_, _), g in list(words.groupby(["prompt_id", "word_index"]))[:200]:
            assert np.all(np.diff(g.position) == 1)
            assert tok.decode(g.token_id.tolist()) == " " + g.word.iloc[0]
            assert g.token_in_word.tolist() == list(range(len(g))) == list(range(g.word_n_tokens.iloc[0]))
        ends = df[df.is_word_end].sort_values(["prompt_id", "word_index"])
        assert all(indices == list(range(7)) for indices in ends.groupby("prompt_id").word_index.apply(list))
        # absolute position of the word end = prefix + cumulative word lengths - 1
        first = ends[ends.word_index == 0]
        assert (first.position == len(prefix.ids) + first.word_n_tokens - 1).all()


def test_evaluation_lengths_and_heldout_prompts(setup: tuple) -> None:
    """Validation repeats the recipe at each evaluation length; held-out prompts use training words."""
    tok, train, val, cfg, tables = setup
    df = tables["val"]
    assert sorted(df.n_words.unique()) == sorted([cfg.n_words, *cfg.eval_n_words])
    for m in cfg.eval_n_words:
        part = df[df.n_words == m]
        assert part.prompt_id.nunique() == cfg.n_val and (part.prefix_id == 0).all()
        assert part.is_word_end.sum() == cfg.n_val * m
        assert sorted(part[part.is_word_end].word_index.unique()) == list(range(m))
        assert set(part.word) - {""} <= set(val.word)
    assert df.prompt_id.nunique() == cfg.n_val * (1 + len(cfg.eval_n_words))
    held = tables["heldout"]
    assert set(held.word) - {""} <= set(train.word)
    assert not held.token_id.equals(tables["train"].token_id.iloc[: len(held)])  # new prompts, not a copy


def test_same_length_prefix_keeps_the_anchor_and_the_token_count(setup: tuple) -> None:
    tok, _, val, cfg, _ = setup
    text = same_length_prefix(tok, cfg.prefix, val, np.random.default_rng(0))
    assert text.endswith("\nWhen") and text != cfg.prefix
    assert len(PrefixIds.build(tok, cfg, text).ids) == len(PrefixIds.build(tok, cfg).ids)


def test_a_newline_in_params_yaml_reaches_the_tokenizer(setup: tuple, tmp_path: Path) -> None:
    """What `dvc exp run -S $'prompts.eval_prefixes=["Hello.\\nWhen"]'` writes: a real newline."""
    from dvc.utils.hydra import apply_overrides

    from emergent_pos.config import read_params, section

    tok, *_ = setup
    params = tmp_path / "params.yaml"
    params.write_text("prompts:\n  eval_prefixes: []\n")
    apply_overrides(str(params), ['prompts.eval_prefixes=["Hello.\nWhen"]'])  # the shell's $'...' made \n a newline
    cfg = section(read_params(params), "prompts", PromptsConfig)
    ids = PrefixIds.build(tok, cfg, cfg.eval_prefixes[0]).ids
    assert "\n" in [tok.decode([i]) for i in ids] and cfg.eval_prefixes[0] == "Hello.\nWhen"
    apply_overrides(str(params), ['prompts.eval_prefixes=["Hello.\\nWhen"]'])  # plain '...' keeps a backslash
    assert section(read_params(params), "prompts", PromptsConfig).eval_prefixes[0] == "Hello.\\nWhen"


def test_token_lengths_are_uniform(setup: tuple) -> None:
    *_, tables = setup
    ends = tables["train"][tables["train"].is_word_end]
    counts = np.bincount(ends.word_n_tokens, minlength=4)[1:]
    assert chisquare(counts).pvalue > 0.001
    for w in range(7):  # independent of the word slot too
        slot = np.bincount(ends[ends.word_index == w].word_n_tokens, minlength=4)[1:]
        assert chisquare(slot).pvalue > 0.0001


def test_splits_use_their_own_words_and_are_seeded(setup: tuple) -> None:
    tok, train, val, cfg, tables = setup
    assert set(tables["train"].word) - {""} <= set(train.word)
    assert set(tables["val"].word) - {""} <= set(val.word)
    again = build_prompts(train, val, tok, cfg, 3, seed=0)
    pd.testing.assert_frame_equal(again["val"], tables["val"])
    other = build_prompts(train, val, tok, cfg, 3, seed=1)
    assert not other["val"].token_id.equals(tables["val"].token_id)


def test_retokenization_and_context_check(setup: tuple) -> None:
    tok, _, _, cfg, tables = setup
    prefix = PrefixIds.build(tok, cfg)
    assert retokenization_rate(tables["val"], tok, prefix) > 0.9
    check_fits(prefix, cfg, 3, n_ctx=128)
    with pytest.raises(ParamError, match="prompts.n_words"):
        check_fits(prefix, PromptsConfig(n_words=60), 3, n_ctx=128)
