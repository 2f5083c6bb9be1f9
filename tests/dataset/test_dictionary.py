"""Word cleaning, tokenization alignment and the seeded split."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from emergent_pos.config import ParamError
from emergent_pos.dataset.config import DictionaryConfig
from emergent_pos.dataset.dictionary import build_dictionary, tokenize_words
from emergent_pos.dataset.words import clean_words, source_words


def test_clean_words_counts_what_it_drops() -> None:
    words, stats = clean_words(["apple", "", "  ", "Apple", "apple", "don't", "pear ", "x1", "kiwi"])
    assert words == ["apple", "pear", "kiwi"]
    assert (stats.empty, stats.not_lowercase_alpha, stats.duplicates, stats.kept) == (2, 3, 1, 3)


def test_word_list_file_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "words.txt"
    path.write_text("zebra\nApple\n\nzebra\nyak\n")
    words, freqs = source_words(str(path), 10)
    assert words == ["zebra", "yak"] and freqs == [1.0, 0.5]
    with pytest.raises(ParamError, match="dictionary.source"):
        source_words(str(tmp_path / "missing.txt"), 10)


def test_tokenization_matches_words_in_context(tiny_model_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    words = ["the", "architecture", "zebra", "quixotic"]
    ids = tokenize_words(words, tok)
    for word, w_ids in zip(words, ids, strict=True):
        assert tok.decode(w_ids) == " " + word
        assert w_ids == tok(" " + word, add_special_tokens=False)["input_ids"]
    assert len(ids[0]) == 1 and len(ids[3]) > 1


def test_split_is_disjoint_stratified_and_seeded(tiny_model_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    words, _ = source_words("wordfreq", 2000)
    cfg = DictionaryConfig(n_words=2000, max_tokens=3, train_fraction=0.8)
    train, val = build_dictionary(words, tok, cfg, seed=1)
    assert not set(train.word) & set(val.word)
    assert set(train.n_tokens) == set(val.n_tokens) == {1, 2, 3}
    assert abs(len(train) / (len(train) + len(val)) - 0.8) < 0.01
    train2, _ = build_dictionary(words, tok, cfg, seed=1)
    train3, _ = build_dictionary(words, tok, cfg, seed=2)
    assert train.word.tolist() == train2.word.tolist()
    assert set(train.word) != set(train3.word)


def test_empty_bucket_names_the_key(tiny_model_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    with pytest.raises(ParamError, match="dictionary.n_words"):
        build_dictionary(["the", "of", "and"], tok, DictionaryConfig(n_words=3, max_tokens=3), seed=0)
