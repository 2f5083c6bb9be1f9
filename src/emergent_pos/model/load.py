"""Load the saved model directory back: its card, tokenizer and TransformerLens 4 bridge.

Every stage after ``model`` reads ``data/model`` through here, offline. torch and
transformers are imported by the functions that need them, so a stage that only reads
the card (``report``) starts in a second instead of three.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emergent_pos.config import ParamError
from emergent_pos.model.placement import PLACEMENT_ENV, Placement

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

MODEL_DIR = Path("data/model")
CARD = "model_card.json"


# Where Hugging Face configs keep the trained context length, in TransformerLens's order
# (MPT says max_seq_len); not ``max_length``, which older configs use for generation.
CONTEXT_FIELDS = (
    "n_positions",
    "max_position_embeddings",
    "max_context_length",
    "seq_length",
    "max_sequence_length",
    "max_seq_len",
    "n_ctx",
)


def text_config(config: Any) -> Any:
    """The language model's own config: multimodal configs nest it (``text_config``)."""
    getter = getattr(config, "get_text_config", None)
    return getter() if callable(getter) else config


def context_length(config: Any) -> int | None:
    """The longest input the model was trained on; None when it has no positional limit.

    State-space models (Mamba) and ALiBi models (Bloom) have no position table, so their
    configs name no context length: prompts of any length are then accepted.
    """
    inner = text_config(config)
    for field in CONTEXT_FIELDS:
        value = getattr(inner, field, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def read_card(model_dir: str | Path = MODEL_DIR) -> dict:
    path = Path(model_dir) / CARD
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `dvc repro model` (or `dvc pull data/model`)")
    return json.loads(path.read_text())


def load_tokenizer(model_dir: str | Path = MODEL_DIR) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    read_card(model_dir)
    return AutoTokenizer.from_pretrained(str(model_dir))


def load_bridge(model_dir: str | Path, placement: str | Placement, processing: str = "raw") -> Any:
    """TransformerLens 4 bridge over the saved directory; ``compat`` folds LN like TL 1.x.

    ``placement``: a device (``"cpu"``, ``"cuda:0"``) or a ``Placement`` that splits the
    blocks over several devices (``placement_from_env``). A placement TransformerLens
    refuses is one line naming ``EMERGENT_POS_PLACEMENT``.
    """
    import torch
    from transformer_lens.model_bridge import TransformerBridge

    card = read_card(model_dir)
    where = placement if isinstance(placement, Placement) else Placement(device=placement)
    try:
        bridge = TransformerBridge.boot_transformers(str(model_dir), dtype=torch.float32, **where.boot_kwargs())
    except (ValueError, ImportError) as err:
        if not where.split:
            raise
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0].split(". ")[0]
        raise ParamError(PLACEMENT_ENV, str(where), f"TransformerLens cannot place the model so: {reason}") from err
    if processing == "compat":
        bridge.enable_compatibility_mode(disable_warnings=True)
    bridge.eval()
    logger.info(
        "loaded %s (%s, init=%s) from %s: %d layers, d_model %d, context %s, processing %s, on %s",
        card["name"],
        card["architecture"],
        card["init"],
        model_dir,
        card["n_layers"],
        card["d_model"],
        card["n_ctx"] or "unlimited",
        processing,
        describe_devices(bridge) if where.split else where.device,
    )
    return bridge


def describe_devices(bridge: Any) -> str:
    """Which blocks sit on which device, e.g. ``cuda:0 (blocks 0-15), cuda:1 (blocks 16-31)``."""
    spans: list[tuple[str, int, int]] = []
    for i, block in enumerate(bridge.blocks):
        device = str(next(block.parameters()).device)
        if spans and spans[-1][0] == device:
            spans[-1] = (device, spans[-1][1], i)
        else:
            spans.append((device, i, i))
    return ", ".join(f"{d} (blocks {a}-{b})" if a != b else f"{d} (block {a})" for d, a, b in spans)
