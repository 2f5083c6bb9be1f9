"""Build the model directory (toy organism or a Hugging Face model).

``data/model/`` is a plain Hugging Face directory (config, safetensors, tokenizer) plus
``model_card.json`` saying where it came from; later stages load it with ``load.py``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from emergent_pos.dataset.words import SEED_PREFIX, source_words
from emergent_pos.io.files import atomic_path
from emergent_pos.io.resources import check_memory, matmul_rate
from emergent_pos.model.arch import UnsupportedModel, architecture_of, check_bridge, transformer_lens_version
from emergent_pos.model.config import ModelConfig, ToyConfig
from emergent_pos.model.corpus import fixed_texts
from emergent_pos.model.hub import (
    ModelUnavailable,
    cached_commit,
    download_command,
    hub_offline,
    hub_reachable,
    read_config,
)
from emergent_pos.model.load import CARD, context_length
from emergent_pos.model.organism import (
    build_toy_model,
    train_organism,
    train_tokenizer,
    training_budget,
)

logger = logging.getLogger(__name__)


def load_hf(cfg: ModelConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a hub name (through the HF cache, honouring HF_HOME/HF_HUB_OFFLINE) or a directory.

    A hub name with the hub unreachable loads from the local cache only, so a missing
    model fails in seconds instead of after the hub client's retries. The config is read
    first: an architecture TransformerLens cannot run fails before any weights load.
    """
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    local = Path(cfg.name)
    if local.is_dir() and not (local / "config.json").is_file():
        raise ModelUnavailable(
            f"model.name={cfg.name!r} is a directory but not a model directory (no config.json in it): "
            "give 'toy', a Hugging Face name, or a directory written by save_pretrained"
        )
    if not local.is_dir():
        kwargs["revision"] = cfg.revision
    unreachable = not local.is_dir() and not hub_offline() and not hub_reachable()
    if unreachable:
        kwargs["local_files_only"] = True
        logger.info("the hub is unreachable: loading %s from the local cache only", cfg.name)
    try:
        architecture = architecture_of(read_config(cfg, cfg.name, **kwargs), cfg.name)
    except ModelUnavailable:
        if local.is_dir():
            raise
        architecture = None  # not cached: the loading below says so, with the way out
    if architecture:
        logger.info("%s: architecture %s, revision %s", cfg.name, architecture, cfg.revision)
    try:
        tok = AutoTokenizer.from_pretrained(cfg.name, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(cfg.name, use_safetensors=True, dtype=torch.float32, **kwargs)
    except (OSError, ValueError) as err:
        reason = " ".join(str(err).split())[:300]
        if local.is_dir():
            raise ModelUnavailable(
                f"model.name={cfg.name!r} (directory): cannot load safetensors weights and tokenizer from it: "
                f"{type(err).__name__}: {reason}"
            ) from err
        raise ModelUnavailable(
            f"model.name={cfg.name!r} (Hugging Face name): cannot load safetensors weights and tokenizer "
            f"(HF_HOME={os.environ.get('HF_HOME', '~/.cache/huggingface')}, "
            f"HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}"
            f"{', hub unreachable' if unreachable else ''}): {type(err).__name__}: "
            f"{reason} -- on a connected machine run "
            f"`{download_command(cfg)}` and copy the cache here, or `dvc pull data/model` from a remote"
        ) from err
    return model.eval(), tok


def check_toy_budget(toy: ToyConfig, train: bool) -> None:
    """Refuse an organism this machine cannot hold, naming the param that makes it big; log time."""
    weights, activations, flops = training_budget(toy, toy.vocab_size)
    if not train:
        weights, activations, flops = weights // 4, 0, 0.0
    key = ("toy.d_model", toy.d_model) if weights >= activations else ("toy.batch_size", toy.batch_size)
    check_memory(*key, weights + activations, f"the toy organism ({'training' if train else 'weights'})")
    if flops:
        seconds = flops / matmul_rate()
        # small models run well below the peak matmul rate: a lower bound, typically 1-3x short
        logger.info("training: about %.2g FLOP, at least %.0f s at this machine's matmul rate", flops, seconds)


def build_model(
    cfg: ModelConfig, toy: ToyConfig, seed: int
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, list[dict]]:
    """The model the experiment probes, with the toy organism's loss curve (empty otherwise)."""
    curve: list[dict] = []
    if cfg.name == "toy":
        steps = cfg.toy_steps(toy)
        check_toy_budget(dataclasses.replace(toy, steps=steps), train=cfg.init == "pretrained")
        words, freqs = source_words("wordfreq", toy.n_source_words)
        if cfg.init == "random":
            tok = train_tokenizer(words, freqs, fixed_texts(SEED_PREFIX, toy), toy.vocab_size)
            model = build_toy_model(toy, tok)
        else:
            model, tok, curve = train_organism(words, freqs, SEED_PREFIX, toy, seed, stop_after=steps)
    else:
        model, tok = load_hf(cfg)
    if cfg.init == "random":
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(model.config, trust_remote_code=cfg.trust_remote_code)
        logger.info("re-initialised all weights from seed %d (random-init control)", seed)
    return model.eval(), tok, curve


def adds_bos(tok: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer puts BOS first by default (on the card: a hint for prompts.prepend_bos)."""
    ids = tok("a")["input_ids"]
    return tok.bos_token_id is not None and bool(ids) and ids[0] == tok.bos_token_id


def save_model(model: PreTrainedModel, tok: PreTrainedTokenizerBase, cfg: ModelConfig, seed: int, out: Path) -> dict:
    """Write the directory atomically; the card records provenance and shape.

    Before the directory is moved into place, TransformerLens boots it (wrapping the
    model in memory, not a second copy) and a test forward pass must fire every
    residual-stream hook: a model the later stages cannot read is never saved.
    """
    from transformer_lens.model_bridge import TransformerBridge

    architecture = architecture_of(model.config, cfg.name)
    n_params = int(model.num_parameters())  # before the bridge wraps it: it registers modules of its own
    with atomic_path(out, directory=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        try:
            bridge = TransformerBridge.boot_transformers(
                str(tmp), device=str(model.device), dtype=model.dtype, hf_model=model
            )
        except (MemoryError, torch.OutOfMemoryError):
            raise  # reported as memory, not as an unsupported architecture
        except Exception as err:  # TransformerLens's own failure, whatever its type: the model is the cause
            reason = " ".join(str(err).split())[:300]
            raise UnsupportedModel(
                f"model.name={cfg.name!r}: TransformerLens {transformer_lens_version()} cannot boot this "
                f"{architecture}: {type(err).__name__}: {reason}"
            ) from err
        n_layers = int(bridge.cfg.n_layers)
        lacking = check_bridge(bridge, n_layers, cfg.name)
        if lacking:
            logger.info(
                "%s has no %s: the heads stage will say it does not apply; the other stages read its blocks' outputs",
                architecture,
                lacking[0],
            )
        card = {
            "name": cfg.name,
            "revision": cfg.revision,
            "commit": cached_commit(cfg),
            "init": cfg.init,
            "seed": seed,
            "architecture": architecture,
            "n_layers": n_layers,
            "d_model": int(bridge.cfg.d_model),
            "n_ctx": context_length(model.config),
            "attention": not lacking,
            "adds_bos": adds_bos(tok),
            "vocab_size": len(tok),
            "n_params": n_params,
            "transformer_lens": transformer_lens_version(),
        }
        (tmp / CARD).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return card
