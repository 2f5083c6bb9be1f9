"""The prompt tables: the seed's recipe (the default scheme), uniform token lengths, split hygiene, context checks."""

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
    check_lengths,
    check_prefix_fits,
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
        df = df[(df.n_units == cfg.n_units) & (df.prefix_id == 0)]  # the main set (validation holds more)
        assert df.prompt_id.nunique() == n and (df.scheme == "word_in_sentence").all()
        assert df.is_word_end.sum() == n * cfg.n_units == df.is_word_start.sum() == df.unit_end.sum()
        assert (df.label == df.word_index).all() and (df.unit_end == df.is_word_end).all()
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
        # the nearer confound: tokens since the anchor (the prefix's last token)
        assert (ends.confound == ends.position - (len(prefix.ids) - 1)).all()
        assert (ends.anchor == len(prefix.ids) - 1).all()


def test_evaluation_lengths_and_heldout_prompts(setup: tuple) -> None:
    """Validation repeats the recipe at each evaluation length; held-out prompts use training words."""
    tok, train, val, cfg, tables = setup
    df = tables["val"]
    assert sorted(df.n_units.unique()) == sorted([cfg.n_units, *cfg.eval_n_units])
    for m in cfg.eval_n_units:
        part = df[df.n_units == m]
        assert part.prompt_id.nunique() == cfg.n_val and (part.prefix_id == 0).all()
        assert part.is_word_end.sum() == cfg.n_val * m
        assert sorted(part[part.is_word_end].word_index.unique()) == list(range(m))
        assert set(part.word) - {""} <= set(val.word)
    assert df.prompt_id.nunique() == cfg.n_val * (1 + len(cfg.eval_n_units) + 1)  # + the paragraph variant
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
    check_prefix_fits(prefix, cfg, n_ctx=128)
    check_lengths(tables, cfg, n_ctx=128)
    # more units than the context holds: the count is blamed, not the prefix
    for n in (128, 100000):
        with pytest.raises(ParamError, match="prompts.n_units"):
            check_prefix_fits(prefix, PromptsConfig(n_units=n), n_ctx=128)
    by_count = {"val": tables["val"][tables["val"].prefix_id == 0]}  # 5, 7 and 9 units: the 9s are longest
    with pytest.raises(ParamError, match=r"prompts.eval_n_units=\[5, 9\]: prompts reach"):
        check_lengths(by_count, cfg, n_ctx=30)
    with pytest.raises(ParamError, match="prompts.n_units=7: prompts reach"):
        check_lengths({"train": tables["train"]}, cfg, n_ctx=30)
    # a prefix that fills the context is the prefix's fault
    with pytest.raises(ParamError, match="prompts.prefix.*leaving no room"):
        check_prefix_fits(prefix, cfg, n_ctx=len(prefix.ids) + 2)


def test_training_prefixes_share_the_training_prompts(setup: tuple) -> None:
    """``prompts.train_prefixes``: the training prompts are split over the prefixes; each is also a
    validation set (with validation words), beside the held-out prefixes."""
    tok, train, val, _, _ = setup
    cfg = PromptsConfig(n_train=90, n_val=20, train_prefixes=["Hello.\nWhen"], eval_prefixes=["Once.\nWhen"])
    tables = build_prompts(train, val, tok, cfg, 3, seed=0)
    by_prefix = tables["train"].groupby("prefix_id").prompt_id.nunique()
    assert by_prefix.to_dict() == {0: 45, 1: 45}
    assert tables["train"].prompt_id.nunique() == 90  # ids run on across prefixes
    assert sorted(tables["val"][tables["val"].n_units == 7].prefix_id.unique()) == [0, 1, 2, 3]  # 3: the paragraph set


def test_too_few_training_prompts_is_one_line_naming_n_train(setup: tuple) -> None:
    tok, train, val, _, _ = setup
    with pytest.raises(ParamError, match="prompts.n_train=1: the training prompts hold no word of"):
        build_prompts(train, val, tok, PromptsConfig(n_train=1, n_units=2), 3, seed=0)


def test_the_paragraph_variant_restarts_the_count_at_the_full_stop_and_capital(setup: tuple) -> None:
    """word_in_sentence's ``paragraph`` set: a second sentence after ". When", labelled from 0
    again, counting from that anchor; its units keep counting (7..13), under a prefix_id of its own."""
    tok, _, _, cfg, tables = setup
    val = tables["val"]
    para = val[val.prefix_id == val.prefix_id.max()]
    assert para.prompt_id.nunique() == cfg.n_val and (para.n_units == 7).all()
    prompt = para[para.prompt_id == para.prompt_id.min()]
    ends = prompt[prompt.unit_end]
    assert ends.label.tolist() == [*range(7), *range(7)] and ends.unit.tolist() == list(range(14))
    text = tok.decode(prompt.token_id.tolist())
    assert text.count(". When") == 1 and text.endswith(ends.word.iloc[-1])
    restart = int(prompt[prompt.label.eq(-1) & (prompt.position > ends.position.iloc[6])].position.max())
    second = ends.iloc[7:]
    assert (second.anchor == restart).all() and (second.confound == second.position - restart).all()
    assert tok.decode(prompt.token_id.tolist()[: restart + 1]).endswith(". When")
