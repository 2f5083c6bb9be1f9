"""What this machine can hold: estimates are checked against it before any allocation.

A stage that would need more memory than is available refuses in one line naming the
param responsible, instead of failing minutes later (or taking the machine down).
"""

from __future__ import annotations

import logging
import os

from emergent_pos.config import ParamError

logger = logging.getLogger(__name__)

# Fraction of the available memory a stage may plan to use: the rest is for the
# interpreter, libraries and whatever else runs beside it.
MEMORY_SHARE = 0.8


def available_memory() -> int:
    """Bytes of memory available to a new allocation (Linux MemAvailable; else physical total)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def gib(n: float) -> str:
    """Bytes for people: GiB, or MiB below one GiB."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def check_memory(key: str, value: object, needed: int, what: str) -> None:
    """Refuse ``needed`` bytes (for ``what``) when they exceed the available share; log the plan."""
    available = available_memory()
    if needed > MEMORY_SHARE * available:
        raise ParamError(
            key, value, f"{what} would need about {gib(needed)} of memory but {gib(available)} is available"
        )
    logger.info("%s: about %s of memory (%s available)", what, gib(needed), gib(available))


def matmul_rate(device: str = "cpu") -> float:
    """FLOP/s of a float32 matrix product here, measured in ~0.1 s: the base of time estimates."""
    import time

    import torch

    a = torch.randn(512, 512, device=device)
    a @ a  # warm-up
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < 0.1:
        a @ a
        n += 1
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return 2 * 512**3 * n / (time.perf_counter() - t0)
