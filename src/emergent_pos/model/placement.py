"""Where the model's weights go at run time: one device, or split by accelerate.

Placement is an environment knob, never a param: where the weights sit must not change
a result, so it must not change DVC's cache key either. Two variables say it:

- ``EMERGENT_POS_DEVICE`` (``auto | cpu | cuda | cuda:N | mps``): the one device.
- ``EMERGENT_POS_PLACEMENT`` for a model split over several devices:
  ``auto`` (default: one device, the one above), a device count (``2``: TransformerLens
  balances the blocks over the first two GPUs), or a JSON object with accelerate's
  ``device_map`` / ``max_memory`` / ``offload_folder``, inline or ``@file.json``:
  ``{"device_map": "auto", "max_memory": {"0": "70GiB", "1": "70GiB"}}``. These are
  passed to ``TransformerBridge.boot_transformers`` (``max_memory``'s GPU keys as ints).

TransformerLens 4.3 accepts all-GPU splits and all-CPU (or CPU and disk) maps; it
refuses maps that mix a GPU with CPU or disk offload, so a model larger than the GPUs
needs more GPUs (or float16 weights), not CPU offload.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emergent_pos.config import ParamError

DEVICE_ENV = "EMERGENT_POS_DEVICE"
PLACEMENT_ENV = "EMERGENT_POS_PLACEMENT"
MAP_KEYS = ("device_map", "max_memory", "offload_folder")
_USAGE = 'use auto, a device count (2), or a JSON object {"device_map": ..., "max_memory": ...} inline or as @file.json'


@dataclass(frozen=True)
class Placement:
    """One device (``device``), or accelerate's dispatch (``n_devices`` or ``device_map``)."""

    device: str | None = None
    n_devices: int | None = None
    device_map: str | dict[str, str | int] | None = None
    max_memory: dict[str | int, str | int] | None = None
    offload_folder: str | None = None

    @property
    def split(self) -> bool:
        """Blocks may live on different devices."""
        return self.device is None

    def boot_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``TransformerBridge.boot_transformers`` (the ones that are set)."""
        return {f: getattr(self, f) for f in self.__dataclass_fields__ if getattr(self, f) is not None}

    def __str__(self) -> str:
        if not self.split:
            return str(self.device)
        return ", ".join(f"{k}={v}" for k, v in self.boot_kwargs().items())


def resolve_device(requested: str) -> str:
    """``auto`` picks CUDA when present; an explicit device must exist here."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError as err:
        raise ParamError(DEVICE_ENV, requested, "use auto, cpu, cuda, cuda:N or mps") from err
    if device.type == "cuda":
        count = cuda_count()
        if device.index is not None and device.index >= count or count == 0:
            raise ParamError(
                DEVICE_ENV,
                requested,
                f"no such CUDA device here (torch {torch.__version__}, built with CUDA {torch.version.cuda}, "
                f"{count} device(s) visible); use auto or cpu",
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ParamError(DEVICE_ENV, requested, "MPS is not available here; use auto or cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ParamError(DEVICE_ENV, requested, "use auto, cpu, cuda, cuda:N or mps")
    return requested


def cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def parse_placement(spec: str, device: str = "auto") -> Placement:
    """``EMERGENT_POS_PLACEMENT`` (and ``EMERGENT_POS_DEVICE``) as a ``Placement``; one-line errors."""
    spec = spec.strip()
    if spec in ("", "auto"):
        return Placement(device=resolve_device(device))
    if device != "auto":
        raise ParamError(
            PLACEMENT_ENV, spec, f"{DEVICE_ENV}={device} names one device; unset one of the two (or set it to auto)"
        )
    if spec.isdigit():
        n = int(spec)
        if n < 1:
            raise ParamError(PLACEMENT_ENV, spec, "a device count is at least 1")
        if n == 1:
            return Placement(device=resolve_device("auto"))
        if cuda_count() < n:
            raise ParamError(PLACEMENT_ENV, spec, f"needs {n} CUDA devices; {cuda_count()} visible here")
        return Placement(n_devices=n)
    if spec.startswith("@"):
        path = Path(spec[1:])
        try:
            spec = path.read_text()
        except OSError as err:
            raise ParamError(PLACEMENT_ENV, f"@{path}", f"cannot read it ({err.strerror})") from err
    if not spec.lstrip().startswith("{"):
        raise ParamError(PLACEMENT_ENV, spec, _USAGE)
    try:
        obj = json.loads(spec)
    except json.JSONDecodeError as err:
        raise ParamError(PLACEMENT_ENV, spec, f"not valid JSON ({err.msg} at character {err.pos})") from err
    return placement_from_map(obj)


def placement_from_map(obj: Any) -> Placement:
    """A JSON object's ``device_map`` / ``max_memory`` / ``offload_folder`` checked and typed."""
    if not isinstance(obj, dict) or not obj:
        raise ParamError(PLACEMENT_ENV, obj, _USAGE)
    unknown = sorted(set(obj) - set(MAP_KEYS))
    if unknown:
        raise ParamError(PLACEMENT_ENV, obj, f"unknown key {unknown[0]!r}; the keys are {', '.join(MAP_KEYS)}")
    device_map = obj.get("device_map", "auto")
    if isinstance(device_map, Mapping):
        bad = [v for v in device_map.values() if not isinstance(v, str | int) or isinstance(v, bool)]
        if bad or not device_map:
            raise ParamError(PLACEMENT_ENV, obj, 'device_map maps module names to devices ("cpu", 0, "cuda:1")')
        device_map = dict(device_map)
    elif not isinstance(device_map, str):
        raise ParamError(PLACEMENT_ENV, obj, 'device_map is "auto", "balanced", "sequential" or a dict')
    max_memory = obj.get("max_memory")
    if max_memory is not None:
        if not isinstance(max_memory, Mapping) or not max_memory:
            raise ParamError(PLACEMENT_ENV, obj, 'max_memory maps devices to sizes: {"0": "20GiB", "cpu": "60GiB"}')
        if any(not isinstance(v, str | int) or isinstance(v, bool) for v in max_memory.values()):
            raise ParamError(PLACEMENT_ENV, obj, 'max_memory sizes are bytes or strings such as "20GiB"')
        # JSON keys are strings; accelerate names GPUs by index
        max_memory = {int(k) if str(k).isdigit() else k: v for k, v in max_memory.items()}
    folder = obj.get("offload_folder")
    if folder is not None and not isinstance(folder, str):
        raise ParamError(PLACEMENT_ENV, obj, "offload_folder is a directory path")
    return Placement(device_map=device_map, max_memory=max_memory, offload_folder=folder)


def placement_from_env(environ: Mapping[str, str] = os.environ) -> Placement:
    """The run's placement, from ``EMERGENT_POS_PLACEMENT`` and ``EMERGENT_POS_DEVICE``."""
    return parse_placement(environ.get(PLACEMENT_ENV, "auto"), environ.get(DEVICE_ENV, "auto"))
