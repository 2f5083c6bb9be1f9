"""The embedded model organism: a tiny transformer trained offline so that counting pays, in every scheme.

``toy.arch`` picks its family: ``gpt2`` (learned absolute positions added to the
residual stream, the default) or ``llama`` (rotary positions, RMSNorm, SwiGLU: no
position in the stream itself), so the effect of how positions enter can be measured.

The corpus (``corpus.py``) puts the next token where a count decides it: the full stop
after the announced number of words, the paragraph's end after its sentences, the list's
last item, the blank line after the lines, the line break at the width. The tokenizer is
a byte-level BPE trained on every source word (``" " + word``) plus the corpus's fixed
texts, so that common words are one token and rarer ones split into two or more.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch
from tokenizers import ByteLevelBPETokenizer
from tqdm import tqdm
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast, LlamaConfig, LlamaForCausalLM, PreTrainedModel

from emergent_pos.model.config import ToyConfig
from emergent_pos.model.corpus import BOS, Corpus, fixed_texts

logger = logging.getLogger(__name__)


def train_tokenizer(
    words: list[str], frequencies: list[float], extra_texts: list[str], vocab_size: int
) -> GPT2TokenizerFast:
    """Byte-level BPE over ``" " + word`` (the form words take in prompts) and the fixed texts.

    Words are repeated in proportion to their frequency, as in running text, so that
    common words become single tokens and rare ones split; the fixed texts (prefix,
    anchor, headers) are repeated often enough to be merged into a few tokens.
    """
    bpe = ByteLevelBPETokenizer()
    counts = [1 + int(f * 2e5) for f in frequencies]
    texts = [" " + w for w, c in zip(words, counts, strict=True) for _ in range(c)] + extra_texts * 1000
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[BOS], show_progress=False)
    tok = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=BOS, eos_token=BOS, unk_token=BOS)
    tok.model_max_length = 1024
    return tok


def build_toy_model(cfg: ToyConfig, tok: GPT2TokenizerFast) -> PreTrainedModel:
    """An untrained model of the organism's shape (dropout off: the corpus is endless)."""
    if cfg.arch == "llama":
        return LlamaForCausalLM(
            LlamaConfig(
                vocab_size=len(tok),
                hidden_size=cfg.d_model,
                intermediate_size=4 * cfg.d_model,
                num_hidden_layers=cfg.n_layers,
                num_attention_heads=cfg.n_heads,
                num_key_value_heads=cfg.n_heads,
                max_position_embeddings=cfg.n_positions,
                bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id,
                tie_word_embeddings=True,
            )
        )
    return GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tok),
            n_positions=cfg.n_positions,
            n_embd=cfg.d_model,
            n_layer=cfg.n_layers,
            n_head=cfg.n_heads,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
        )
    )


def toy_parameters(cfg: ToyConfig, vocab_size: int) -> int:
    """The organism's parameter count (embeddings tied), known before it is built."""
    d = cfg.d_model
    if cfg.arch == "llama":  # no stored positions; attention and a 4d SwiGLU without biases; RMSNorms
        return vocab_size * d + cfg.n_layers * (16 * d * d + 2 * d) + d
    return (vocab_size + cfg.n_positions) * d + cfg.n_layers * (12 * d * d + 13 * d) + 2 * d


def training_budget(cfg: ToyConfig, vocab_size: int) -> tuple[int, int, float]:
    """Peak training memory (bytes: weights and optimizer state; activations and logits)
    and compute (FLOP) of the organism, before it exists.

    Memory: float32 weights, gradients and AdamW's two moments (16 bytes a parameter),
    the activations kept for the backward pass (Korthikanti et al. 2022, doubled for
    float32) and the logits with their softmax and gradient. Refused by the model stage
    when it cannot fit, in one line, instead of an allocation error.
    """
    d, n_layers, tokens = cfg.d_model, cfg.n_layers, cfg.batch_size * cfg.seq_len
    params = toy_parameters(cfg, vocab_size)
    activations = n_layers * tokens * (34 * d + 5 * cfg.n_heads * cfg.seq_len) * 2
    logits = tokens * vocab_size * 4 * 3
    flops = 6 * params * tokens * cfg.steps + 12 * n_layers * tokens * cfg.seq_len * d * cfg.steps
    return 16 * params, activations + logits, float(flops)


def train_organism(
    words: list[str], frequencies: list[float], prefix: str, cfg: ToyConfig, seed: int, stop_after: int | None = None
) -> tuple[PreTrainedModel, GPT2TokenizerFast, list[dict[str, float]]]:
    """Train tokenizer and model; returns them with the loss curve (one row per logged step).

    ``stop_after`` ends training after that many of the ``cfg.steps`` steps: the learning
    rate schedule, the batches and the seeds are those of the full run, so the weights are
    exactly the full run's checkpoint at that step (``model.revision: stepN``).
    """
    stop_after = cfg.steps if stop_after is None else stop_after
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    tok = train_tokenizer(words, frequencies, fixed_texts(prefix, cfg), cfg.vocab_size)
    corpus = Corpus.build(tok, words, prefix, cfg)
    logger.info(
        "toy tokenizer: vocab %d, words per token length %s (%.1fs)",
        len(tok),
        [len(b) for b in corpus.buckets],
        time.perf_counter() - t0,
    )
    model = build_toy_model(cfg, tok)
    logger.info(
        "toy model: %d layers, d_model %d, %.2fM parameters", cfg.n_layers, cfg.d_model, model.num_parameters() / 1e6
    )
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, cfg.steps // 20)

    def lr_at(step: int) -> float:  # linear warm-up, cosine decay to 10%
        if step < warmup:
            return cfg.lr * (step + 1) / warmup
        frac = (step - warmup) / max(1, cfg.steps - warmup)
        return cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * frac)))

    curve: list[dict[str, float]] = []
    model.train()
    for step in tqdm(range(stop_after), desc=f"train toy organism ({stop_after} of {cfg.steps} steps)", mininterval=2):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        batch = corpus.batch(rng, cfg)
        loss = model(batch, labels=batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % max(1, cfg.steps // 100) == 0 or step == cfg.steps - 1:
            curve.append({"step": step, "loss": float(loss.item())})
    model.eval()
    if curve:
        logger.info("toy organism trained: final loss %.3f in %.0fs", curve[-1]["loss"], time.perf_counter() - t0)
    return model, tok, curve
