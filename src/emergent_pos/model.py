"""Build the model directory (toy organism or a Hugging Face model) and load it back.

``data/model/`` is a plain Hugging Face directory (config, safetensors, tokenizer) plus
``model_card.json`` saying where it came from; every later stage loads it with
TransformerLens 4 (``TransformerBridge.boot_transformers``), offline.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from emergent_pos.atomic import atomic_path
from emergent_pos.config import SEED_PREFIX, ModelConfig, ParamError, ToyConfig
from emergent_pos.dictionary import source_words
from emergent_pos.organism import build_toy_model, tokenizer_texts, train_organism, train_tokenizer

logger = logging.getLogger(__name__)

CARD = "model_card.json"


class ModelUnavailable(RuntimeError):
    """The requested weights cannot be had here; never answered with another model."""


def load_hf(cfg: ModelConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a hub name (through the HF cache, honouring HF_HOME/HF_HUB_OFFLINE) or a directory."""
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    try:
        tok = AutoTokenizer.from_pretrained(cfg.name, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(cfg.name, use_safetensors=True, dtype=torch.float32, **kwargs)
    except (OSError, ValueError) as err:
        where = "directory" if Path(cfg.name).exists() else "Hugging Face name"
        raise ModelUnavailable(
            f"model.name={cfg.name!r} ({where}): cannot load safetensors weights and tokenizer "
            f"(HF_HOME={os.environ.get('HF_HOME', '~/.cache/huggingface')}, "
            f"HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}): {type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''} -- on a connected machine run "
            f"`hf download {cfg.name}` and copy the cache here, or `dvc pull data/model` from a remote"
        ) from err
    return model.eval(), tok


def build_model(
    cfg: ModelConfig, toy: ToyConfig, seed: int
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, list[dict]]:
    """The model the experiment probes, with the toy organism's loss curve (empty otherwise)."""
    curve: list[dict] = []
    if cfg.name == "toy":
        words, freqs = source_words("wordfreq", toy.n_source_words)
        if cfg.init == "random":
            tok = train_tokenizer(words, freqs, tokenizer_texts(SEED_PREFIX), toy.vocab_size)
            model = build_toy_model(toy, tok)
        else:
            model, tok, curve = train_organism(words, freqs, SEED_PREFIX, toy, seed)
    else:
        model, tok = load_hf(cfg)
    if cfg.init == "random":
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(model.config, trust_remote_code=cfg.trust_remote_code)
        logger.info("re-initialised all weights from seed %d (random-init control)", seed)
    return model.eval(), tok, curve


def save_model(model: PreTrainedModel, tok: PreTrainedTokenizerBase, cfg: ModelConfig, seed: int, out: Path) -> dict:
    """Write the directory atomically; the card records provenance and shape."""
    card = {
        "name": cfg.name,
        "init": cfg.init,
        "seed": seed,
        "architecture": type(model).__name__,
        "n_layers": int(model.config.num_hidden_layers),
        "d_model": int(model.config.hidden_size),
        "n_ctx": context_length(model.config),
        "vocab_size": len(tok),
        "n_params": int(model.num_parameters()),
    }
    with atomic_path(out, directory=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / CARD).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return card


def context_length(config: Any) -> int:
    for field in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        value = getattr(config, field, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(f"cannot tell the context length of {type(config).__name__}")


def read_card(model_dir: str | Path) -> dict:
    path = Path(model_dir) / CARD
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `dvc repro model` (or `dvc pull data/model`)")
    return json.loads(path.read_text())


def load_tokenizer(model_dir: str | Path) -> PreTrainedTokenizerBase:
    read_card(model_dir)
    return AutoTokenizer.from_pretrained(str(model_dir))


def load_bridge(model_dir: str | Path, device: str, processing: str = "raw") -> Any:
    """TransformerLens 4 bridge over the saved directory; ``compat`` folds LN like TL 1.x."""
    from transformer_lens.model_bridge import TransformerBridge

    card = read_card(model_dir)
    config = AutoConfig.from_pretrained(str(model_dir))
    bridge = TransformerBridge.boot_transformers(str(model_dir), device=device, dtype=torch.float32)
    if processing == "compat":
        bridge.enable_compatibility_mode(disable_warnings=True)
    bridge.eval()
    logger.info(
        "loaded %s (%s, init=%s) from %s: %d layers, d_model %d, context %d, device %s, processing %s",
        card["name"],
        card["architecture"],
        card["init"],
        model_dir,
        card["n_layers"],
        card["d_model"],
        context_length(config),
        device,
        processing,
    )
    return bridge


def resolve_device(requested: str) -> str:
    """``auto`` picks CUDA when present; anything else is passed to torch as given."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(requested)
    except RuntimeError as err:
        raise ParamError("EMERGENT_POS_DEVICE", requested, "use auto, cpu, cuda or cuda:N") from err
    return requested
