"""Can ``model.name`` be loaded here? Answered in seconds, before anything is removed.

The hub client, offline, retries for most of a minute before it fails; the ``check``
stage and the model stage ask here first, so a missing model fails in one line, fast.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from emergent_pos.config import ParamError
from emergent_pos.errors import UserError
from emergent_pos.model.arch import architecture_of
from emergent_pos.model.config import ModelConfig


class ModelUnavailable(UserError, RuntimeError):
    """The requested weights cannot be had here; never answered with another model."""


HUB_PROBE_SECONDS = 2.0


def hub_reachable(timeout: float = HUB_PROBE_SECONDS) -> bool:
    """Whether the hub (``HF_ENDPOINT``) accepts a TCP connection within ``timeout`` seconds.

    Offline, the hub client would retry for most of a minute before failing; this probe
    (name lookup included, bounded by a thread join) answers in ``timeout`` at most.
    """
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    answer: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(answer and answer[0])


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").upper() in ("1", "ON", "YES", "TRUE")


def cached_commit(cfg: ModelConfig) -> str | None:
    """The commit the hub cache holds for ``model.name`` at ``model.revision`` (None: not a hub name)."""
    if cfg.name == "toy" or Path(cfg.name).is_dir():
        return None
    from huggingface_hub import try_to_load_from_cache

    try:
        path = try_to_load_from_cache(cfg.name, "config.json", revision=cfg.revision)
    except ValueError:
        return None
    return Path(path).parent.name if isinstance(path, str) else None


def fetch_config(cfg: ModelConfig) -> str:
    """Download only ``config.json`` (kilobytes) of a hub model: its architecture is then
    checked before DVC removes ``data/model``, and a wrong name or revision fails here."""
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(cfg.name, "config.json", revision=cfg.revision)
    except Exception as err:  # the hub client's own errors (no such repo, revision, file; network)
        reason = " ".join(str(err).split())[:300]
        raise ModelUnavailable(
            f"model.name={cfg.name!r} at revision {cfg.revision!r}: cannot fetch its config.json from the hub "
            f"({type(err).__name__}: {reason})"
        ) from err


def read_config(cfg: ModelConfig, where: str | Path, **kwargs: Any) -> Any:
    """The model's Hugging Face config, or a one-line error saying why it cannot be read."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(where), **{"trust_remote_code": cfg.trust_remote_code, **kwargs})
    except (OSError, ValueError, KeyError) as err:
        reason = " ".join(str(err).split())[:300]
        raise ModelUnavailable(
            f"model.name={cfg.name!r}: cannot read its config.json ({type(err).__name__}: {reason})"
        ) from err


def check_available(cfg: ModelConfig) -> Any:
    """Fail in one line, in seconds, when ``model.name`` cannot be loaded or run here; its config.

    The ``check`` stage calls this before DVC removes ``data/model``: a hub name must be
    in the local cache or the hub reachable; a directory must hold a model. Where the
    config is at hand (a directory, the cache) its architecture must be one TransformerLens
    runs, and it is returned (None for ``toy``, always available: it is trained here).
    """
    if cfg.name == "toy":
        return None
    local = Path(cfg.name)
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelUnavailable(
                f"model.name={cfg.name!r} is a directory but not a model directory (no config.json in it): "
                "give 'toy', a Hugging Face name, or a directory written by save_pretrained"
            )
        if cfg.revision != "main":
            raise ParamError("model.revision", cfg.revision, "a local directory holds one version: use main")
        config = read_config(cfg, local)
        architecture_of(config, cfg.name)
        return config
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(cfg.name, "config.json", revision=cfg.revision)
    except ValueError:  # not a valid repo id
        cached = None
    if not isinstance(cached, str) and not hub_offline() and hub_reachable():
        cached = fetch_config(cfg)
    if isinstance(cached, str):
        config = read_config(cfg, Path(cached).parent)
        architecture_of(config, cfg.name)
        return config
    at = "" if cfg.revision == "main" else f" at revision {cfg.revision!r}"
    raise ModelUnavailable(
        f"model.name={cfg.name!r} (Hugging Face name){at} is not in the local cache "
        f"(HF_HOME={os.environ.get('HF_HOME', '~/.cache/huggingface')}) and the hub is "
        f"{'off (HF_HUB_OFFLINE)' if hub_offline() else 'unreachable'} -- on a connected machine run "
        f"`{download_command(cfg)}` and copy the cache here, or `dvc pull data/model` from a remote"
    )


def download_command(cfg: ModelConfig) -> str:
    """The command that puts ``model.name`` at ``model.revision`` into the Hugging Face cache."""
    return f"hf download {cfg.name}" + ("" if cfg.revision == "main" else f" --revision {cfg.revision}")
