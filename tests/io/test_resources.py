"""Size checks: estimates refused against what the machine has, before anything is allocated."""

from __future__ import annotations

import pytest

from emergent_pos.config import ParamError
from emergent_pos.io.resources import available_memory, check_memory, gib, matmul_rate


def test_memory_beyond_the_machine_is_refused_naming_the_key() -> None:
    assert available_memory() > 2**20
    check_memory("prompts.n_train", 10, 2**20, "a small table")
    with pytest.raises(ParamError, match=r"prompts.n_train='10\*\*12'.*would need about .* GiB of memory"):
        check_memory("prompts.n_train", "10**12", 2**60, "a huge table")


def test_sizes_read_as_people_write_them() -> None:
    assert gib(3 * 2**30) == "3.00 GiB" and gib(5 * 2**20) == "5.0 MiB"
    assert matmul_rate() > 1e8  # FLOP/s: any machine this runs on
