"""The generic params validator: unknown keys, types, one-line errors.

Each phase owns its config dataclasses (``model/config.py``, ``probes/config.py``, ...);
this module only knows how to read ``params.yaml`` and turn one section, or one key of
it, into such a dataclass, failing in one line that names the key, the value and what
is allowed, before any real work.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from emergent_pos.errors import UserError

T = TypeVar("T")


class ParamError(UserError, ValueError):
    """A parameter that cannot be used; the message is one line naming key and value."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        super().__init__(f"bad parameter {key}={value!r}: {allowed}")
        self.key = key


def _check_type(key: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ParamError(key, value, "allowed: " + " | ".join(map(str, typing.get_args(hint))))
        return value
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(hint):
            try:
                return _check_type(key, value, arm)
            except ParamError:
                continue
        raise ParamError(key, value, f"expected {hint}")
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ParamError(key, value, f"expected a list of {item.__name__}")
        return [_check_type(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # PyYAML (YAML 1.1) reads 1e-6 as a string
        try:
            return float(value)
        except ValueError:
            raise ParamError(key, value, "expected float") from None
    if hint is type(None):
        if value is not None:
            raise ParamError(key, value, "expected null")
        return value
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ParamError(key, value, f"expected {hint.__name__}")
    return value


def from_mapping(cls: type[T], section: str, data: Any) -> T:
    """Build ``cls`` from a params section, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ParamError(section, data, "expected a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ParamError(f"{section}.{unknown[0]}", data[unknown[0]], "unknown key; allowed: " + ", ".join(names))
    kwargs = {k: _check_type(f"{section}.{k}", v, hints[k]) for k, v in data.items()}
    obj = cls(**kwargs)
    obj.validate(section)  # type: ignore[attr-defined]
    return obj


def positive(section: str, name: str, value: float, minimum: float = 1) -> None:
    """Shared bound check of the config dataclasses' ``validate`` methods."""
    if value < minimum:
        raise ParamError(f"{section}.{name}", value, f"must be >= {minimum}")


def read_params(path: str | Path) -> dict[str, Any]:
    """The raw mapping of ``params.yaml``; an unreadable or non-mapping file is a one-line error."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ParamError(str(path), "<file>", f"cannot read params: {err}".replace("\n", " ")) from err
    if not isinstance(raw, dict):
        raise ParamError(str(path), raw, "expected a mapping of sections")
    known = declared_sections(path.parent / "dvc.yaml")
    unknown = sorted(set(raw) - known) if known else []
    if unknown:
        raise ParamError(unknown[0], raw[unknown[0]], "unknown section; allowed: " + ", ".join(sorted(known or ())))
    return raw


def declared_sections(dvc_yaml: Path) -> set[str] | None:
    """Top-level params sections that some stage of ``dvc.yaml`` declares (None without one).

    The pipeline definition is the registry of sections, so adding a phase touches no
    shared module; a misspelt section (``porbe:``) is refused by whichever stage reads.
    """
    try:
        stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {})
    except (OSError, yaml.YAMLError):
        return None
    names: set[str] = set()
    for stage in stages.values():
        for entry in stage.get("params", []):
            keys = [k for v in entry.values() for k in v] if isinstance(entry, dict) else [entry]
            names.update(str(k).split(".")[0] for k in keys)
    return names


def section(raw: dict[str, Any], name: str, cls: type[T]) -> T:
    """Section ``name`` as ``cls`` (missing keys take the dataclass defaults)."""
    return from_mapping(cls, name, raw.get(name) or {})


def key(raw: dict[str, Any], name: str, cls: type[T]) -> Any:
    """One key (``section.key``) validated alone, for stages that declare only that key."""
    sec, field = name.split(".", 1)
    data = raw.get(sec) or {}
    if not isinstance(data, dict):
        raise ParamError(sec, data, "expected a mapping")
    obj = from_mapping(cls, sec, {field: data[field]} if field in data else {})
    return getattr(obj, field)


MAX_SEED = 2**32 - 1  # what numpy, torch and scikit-learn all accept


def seed(raw: dict[str, Any]) -> int:
    """The top-level ``seed``: an integer in 0..2**32-1."""
    value = _check_type("seed", raw.get("seed", 0), int)
    if not 0 <= value <= MAX_SEED:
        raise ParamError("seed", value, f"must be in 0..{MAX_SEED}")
    return value
