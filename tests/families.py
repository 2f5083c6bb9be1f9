"""Tiny random-weight models of the families users bring, built offline.

Each has a tokenizer trained here in its family's style and saved as its family saves it
(``tokenizer.json`` plus ``tokenizer_config.json`` naming the tokenizer class), so that
``AutoTokenizer`` loads it through the same class a hub download would:

* byte-level BPE with ``Ġ`` word starts (GPT-2, GPT-NeoX/Pythia, Mamba, OPT with its
  ``</s>`` BOS added by default, Qwen2 without any BOS, Bloom, Llama-3 with its
  ``<|begin_of_text|>`` added by default);
* SentencePiece-style ``▁`` word starts with byte fallback: Llama's old ``tokenizer.json``
  (normalizer prepends ``▁`` and replaces spaces, decoder strips the first space), the
  newer one (``Metaspace`` pre-tokenizer and decoder), and Gemma's (no prefix space, for
  Gemma, Gemma-2 and Gemma-3).

The models cover the shapes the mechanism stages must read from each architecture:
learned position embeddings (GPT-2, OPT), rotary (Pythia, Llama, Qwen2, Gemma) and ALiBi
(Bloom); attention output biases (GPT-2, OPT, Pythia, Bloom) or none (Llama, Qwen2,
Gemma); grouped-query attention (Llama-3 4:1, the Metaspace Llama and Gemma 2:1);
parallel attention and MLP (Pythia); post-attention norms (Gemma-2, Gemma-3); no
attention at all (Mamba).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from emergent_pos.dataset.words import SEED_PREFIX, source_words

VOCAB = 600
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def _texts(leading_space: bool) -> list[str]:
    words, _ = source_words("wordfreq", 3000)
    return [(" " + w if leading_space else w) for w in words] * 3 + [SEED_PREFIX] * 50


def byte_level(specials: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_texts(True), trainer)
    return tok


def sentencepiece(style: str, specials: list[str]) -> Tokenizer:
    """``old``: Llama-2's tokenizer.json; ``metaspace``: the newer Llama one; ``gemma``: no prefix space."""
    tok = Tokenizer(models.BPE(unk_token="<unk>" if "<unk>" in specials else None, byte_fallback=True, fuse_unk=True))
    if style == "metaspace":
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    else:
        prepend = style == "old"
        tok.normalizer = normalizers.Sequence(
            ([normalizers.Prepend("▁")] if prepend else []) + [normalizers.Replace(" ", "▁")]
        )
        tok.decoder = decoders.Sequence(
            [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
            + ([decoders.Strip(" ", 1, 0)] if prepend else [])
        )
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    # SentencePiece never merges across a word boundary, a newline or punctuation; HF's BPE
    # trainer without these splits would (a repeated text would become one token), so they
    # hold while training only: the saved tokenizer.json keeps the family's own layout
    kept = tok.pre_tokenizer
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            *([kept] if kept is not None else []),
            pre_tokenizers.Split("▁", behavior="merged_with_next"),
            pre_tokenizers.Punctuation(behavior="isolated"),
            pre_tokenizers.Split("\n", behavior="isolated"),
        ]
    )
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=specials + byte_tokens, show_progress=False)
    tok.train_from_iterator(_texts(style == "gemma"), trainer)
    tok.pre_tokenizer = kept
    return tok


def save_tokenizer(
    tok: Tokenizer, out: Path, cls: str, bos: str | None, eos: str, add_bos: bool, **special: str
) -> None:
    """Save as the family's hub repo holds it; ``add_bos``: BOS first by default (post-processor)."""
    if add_bos and bos:
        bos_id = tok.token_to_id(bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
        )
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, **special).save_pretrained(out)
    path = out / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["tokenizer_class"] = cls
    if cls in ("LlamaTokenizer", "GemmaTokenizer"):
        config.update(add_bos_token=add_bos, add_eos_token=False)
    path.write_text(json.dumps(config))


Family = Callable[[Path], Any]  # writes the tokenizer into the directory, returns the model config
FAMILIES: dict[str, Family] = {}
PREPEND_BOS: dict[str, bool] = {}


def family(name: str, prepend_bos: bool = True) -> Callable[[Family], Family]:
    def register(build: Family) -> Family:
        FAMILIES[name] = build
        PREPEND_BOS[name] = prepend_bos
        return build

    return register


@family("gpt2")
def _gpt2(d: Path) -> Any:
    save_tokenizer(byte_level(["<|endoftext|>"]), d, "GPT2Tokenizer", "<|endoftext|>", "<|endoftext|>", False)
    return transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=128)


@family("gpt_neox")
def _neox(d: Path) -> Any:
    tok = byte_level(["<|endoftext|>", "<|padding|>"])
    save_tokenizer(tok, d, "GPTNeoXTokenizer", "<|endoftext|>", "<|endoftext|>", False)
    return transformers.GPTNeoXConfig(max_position_embeddings=128, **SMALL)


@family("llama_sentencepiece_old")
def _llama_old(d: Path) -> Any:
    tok = sentencepiece("old", ["<unk>", "<s>", "</s>"])
    save_tokenizer(tok, d, "LlamaTokenizer", "<s>", "</s>", True, unk_token="<unk>")
    return transformers.LlamaConfig(max_position_embeddings=128, num_key_value_heads=2, **SMALL)


@family("llama_sentencepiece_metaspace")
def _llama_new(d: Path) -> Any:
    tok = sentencepiece("metaspace", ["<unk>", "<s>", "</s>"])
    save_tokenizer(tok, d, "LlamaTokenizer", "<s>", "</s>", True, unk_token="<unk>")
    return transformers.LlamaConfig(max_position_embeddings=128, num_key_value_heads=1, **SMALL)


@family("opt")
def _opt(d: Path) -> Any:
    tok = byte_level(["<pad>", "</s>", "<unk>"])
    save_tokenizer(tok, d, "GPT2Tokenizer", "</s>", "</s>", True, unk_token="<unk>", pad_token="<pad>")
    return transformers.OPTConfig(
        hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=2, max_position_embeddings=128
    )


@family("qwen2", prepend_bos=False)
def _qwen2(d: Path) -> Any:
    tok = byte_level(["<|endoftext|>"])
    save_tokenizer(tok, d, "Qwen2Tokenizer", None, "<|endoftext|>", False, pad_token="<|endoftext|>")
    return transformers.Qwen2Config(max_position_embeddings=128, num_key_value_heads=2, **SMALL)


@family("gemma")
def _gemma(d: Path) -> Any:
    tok = sentencepiece("gemma", ["<pad>", "<eos>", "<bos>", "<unk>"])
    save_tokenizer(tok, d, "GemmaTokenizer", "<bos>", "<eos>", True, unk_token="<unk>", pad_token="<pad>")
    return transformers.GemmaConfig(max_position_embeddings=128, num_key_value_heads=1, head_dim=16, **SMALL)


@family("mamba")
def _mamba(d: Path) -> Any:
    tok = byte_level(["<|endoftext|>", "<|padding|>"])
    save_tokenizer(tok, d, "GPTNeoXTokenizer", "<|endoftext|>", "<|endoftext|>", False)
    return transformers.MambaConfig(hidden_size=32, num_hidden_layers=2, state_size=4, expand=2, conv_kernel=4)


@family("bloom")
def _bloom(d: Path) -> Any:
    tok = byte_level(["<unk>", "<s>", "</s>", "<pad>"])
    save_tokenizer(tok, d, "BloomTokenizer", "<s>", "</s>", False, unk_token="<unk>", pad_token="<pad>")
    return transformers.BloomConfig(hidden_size=32, n_layer=2, n_head=2)


@family("llama3")
def _llama3(d: Path) -> Any:
    """Llama-3: byte-level BPE with ``<|begin_of_text|>`` added by default, grouped-query attention
    (4 query heads share 1 key/value head), llama3 rotary scaling."""
    tok = byte_level(["<|begin_of_text|>", "<|end_of_text|>"])
    save_tokenizer(tok, d, "PreTrainedTokenizerFast", "<|begin_of_text|>", "<|end_of_text|>", True)
    rope = {
        "rope_type": "llama3",
        "rope_theta": 500000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    }
    small = {**SMALL, "num_attention_heads": 4}
    return transformers.LlamaConfig(max_position_embeddings=128, num_key_value_heads=1, rope_parameters=rope, **small)


@family("gemma2")
def _gemma2(d: Path) -> Any:
    """Gemma-2: norms after the attention and MLP outputs, logit soft-capping, sliding-window layers."""
    tok = sentencepiece("gemma", ["<pad>", "<eos>", "<bos>", "<unk>"])
    save_tokenizer(tok, d, "GemmaTokenizer", "<bos>", "<eos>", True, unk_token="<unk>", pad_token="<pad>")
    return transformers.Gemma2Config(
        max_position_embeddings=128, num_key_value_heads=1, head_dim=16, sliding_window=16, **SMALL
    )


@family("gemma3")
def _gemma3(d: Path) -> Any:
    """Gemma-3 (text): post-norms like Gemma-2, query/key norms, local and global layers."""
    tok = sentencepiece("gemma", ["<pad>", "<eos>", "<bos>", "<unk>"])
    save_tokenizer(tok, d, "GemmaTokenizer", "<bos>", "<eos>", True, unk_token="<unk>", pad_token="<pad>")
    return transformers.Gemma3TextConfig(
        max_position_embeddings=128, num_key_value_heads=1, head_dim=16, sliding_window=16, **SMALL
    )


def build_family(name: str, out: Path, seed: int = 0) -> Path:
    """A saved directory (config, safetensors, tokenizer) of a random-weight tiny model."""
    out.mkdir(parents=True)
    config = FAMILIES[name](out)
    tok = AutoTokenizer.from_pretrained(out)
    config.vocab_size = len(tok)
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(config, key, getattr(tok, key))
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    return out
