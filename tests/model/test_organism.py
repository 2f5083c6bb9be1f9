"""The organism's corpus: sequences that need a word count to place the full stop."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

from emergent_pos.dataset.words import SEED_PREFIX, source_words
from emergent_pos.model.config import ToyConfig
from emergent_pos.model.organism import Corpus
from helpers import TINY_TOY


def test_sequences_hold_headed_sentences_of_the_announced_length(tiny_model_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = ToyConfig(**{**TINY_TOY, "seq_len": 128})
    words, _ = source_words("wordfreq", cfg.n_source_words)
    corpus = Corpus.build(tok, words, SEED_PREFIX, cfg)
    assert corpus.prefix[0] == tok.bos_token_id and tok.decode(corpus.prefix[1:]) == SEED_PREFIX
    rng = np.random.default_rng(0)
    batch = corpus.batch(rng, cfg)
    assert batch.shape == (cfg.batch_size, cfg.seq_len)
    lines = tok.decode(corpus.sequence(np.random.default_rng(1), cfg)).split("\n")
    pairs = [(int(lines[i][:-1]), lines[i + 1]) for i in range(len(lines) - 1) if re.fullmatch(r"\d:", lines[i])]
    complete = [(k, s) for k, s in pairs if s.endswith(".")]
    assert complete
    for k, sentence in complete:  # each header announces the length of the sentence after it
        assert sentence.startswith("When ") and len(sentence.removesuffix(".").split()) - 1 == k
