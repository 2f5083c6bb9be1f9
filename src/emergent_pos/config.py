"""Typed, validated views of ``params.yaml``: one frozen dataclass per section.

Every stage loads only the sections it declares in ``dvc.yaml``; a bad key fails here,
in one line that names the key, the value and what is allowed, before any real work.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

SEED_PREFIX = (
    "The United States Declaration of Independence received its first formal public reading, in Philadelphia.\nWhen"
)


class ParamError(ValueError):
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


T = TypeVar("T")


def from_mapping(cls: type[T], section: str, data: Any) -> T:
    """Build ``cls`` from a params section, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ParamError(section, data, "expected a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ParamError(f"{section}.{unknown[0]}", data[unknown[0]], "unknown key; allowed: " + ", ".join(names))
    kwargs = {k: _check_type(f"{section}.{k}", v, hints[k]) for k, v in data.items()}
    obj = cls(**kwargs)
    obj.validate(section)  # type: ignore[attr-defined]
    return obj


def _positive(section: str, name: str, value: float, minimum: float = 1) -> None:
    if value < minimum:
        raise ParamError(f"{section}.{name}", value, f"must be >= {minimum}")


@dataclass(frozen=True)
class ModelConfig:
    name: str = "toy"
    """``toy`` (the embedded organism), a Hugging Face model name, or a local directory."""
    init: Literal["pretrained", "random"] = "pretrained"
    """``random`` keeps architecture and tokenizer and re-initialises the weights (control)."""
    trust_remote_code: bool = False
    """Hub models with custom code run it only when this is on."""

    def validate(self, section: str) -> None:
        if not self.name.strip():
            raise ParamError(f"{section}.name", self.name, "give 'toy', a Hugging Face name or a directory")


@dataclass(frozen=True)
class ToyConfig:
    """Shape and training budget of the embedded model organism (see organism.py)."""

    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    n_positions: int = 256
    vocab_size: int = 2000
    n_source_words: int = 20000
    max_word_tokens: int = 4
    prompt_words: int = 7
    min_words: int = 3
    max_words: int = 9
    seq_len: int = 96
    batch_size: int = 64
    steps: int = 400
    lr: float = 3e-3

    def validate(self, section: str) -> None:
        for name in (
            "n_layers",
            "d_model",
            "n_heads",
            "n_positions",
            "max_word_tokens",
            "prompt_words",
            "min_words",
            "seq_len",
            "batch_size",
            "steps",
        ):
            _positive(section, name, getattr(self, name))
        _positive(section, "vocab_size", self.vocab_size, 300)
        _positive(section, "n_source_words", self.n_source_words, 100)
        if self.d_model % self.n_heads:
            raise ParamError(f"{section}.n_heads", self.n_heads, f"must divide toy.d_model={self.d_model}")
        if not self.min_words <= self.max_words <= 9:
            raise ParamError(
                f"{section}.max_words", self.max_words, f"must be in toy.min_words..9 (min_words={self.min_words})"
            )
        if self.seq_len > self.n_positions:
            raise ParamError(f"{section}.seq_len", self.seq_len, f"must be <= toy.n_positions={self.n_positions}")
        if not 0 < self.lr < 1:
            raise ParamError(f"{section}.lr", self.lr, "must be in (0, 1)")


@dataclass(frozen=True)
class DictionaryConfig:
    source: str = "wordfreq"
    """``wordfreq`` (its top English words, offline) or the path of a word list, one per line."""
    n_words: int = 10000
    """How many source words to consider (most frequent first)."""
    max_tokens: int = 3
    """Keep words of 1..max_tokens tokens (as ``" " + word``)."""
    train_fraction: float = 0.8

    def validate(self, section: str) -> None:
        _positive(section, "n_words", self.n_words, 2)
        _positive(section, "max_tokens", self.max_tokens)
        if not 0 < self.train_fraction < 1:
            raise ParamError(f"{section}.train_fraction", self.train_fraction, "must be in (0, 1)")
        if not self.source.strip():
            raise ParamError(f"{section}.source", self.source, "give 'wordfreq' or a word-list path")


@dataclass(frozen=True)
class PromptsConfig:
    prefix: str = SEED_PREFIX
    n_words: int = 7
    n_train: int = 1430
    """Train prompts (1430 x 7 words = the seed's ~10,000 probe training points)."""
    n_val: int = 2560
    prepend_bos: bool = True
    """Prepend the tokenizer's BOS token, as TransformerLens does by default."""
    eval_prefixes: list[str] = field(default_factory=list)
    """Extra validation prefixes ("" = none): same words, probes trained on ``prefix``."""
    words: Literal["dictionary", "random_tokens"] = "dictionary"
    """``random_tokens``: non-words of random tokens, boundaries marked only by a leading space."""

    def validate(self, section: str) -> None:
        _positive(section, "n_words", self.n_words)
        _positive(section, "n_train", self.n_train)
        _positive(section, "n_val", self.n_val)
        for key, prefix in [("prefix", self.prefix)] + [
            (f"eval_prefixes[{i}]", p) for i, p in enumerate(self.eval_prefixes)
        ]:
            if not prefix and not self.prepend_bos:
                raise ParamError(f"{section}.{key}", prefix, "an empty prefix needs prompts.prepend_bos: true")
        if len(set(self.eval_prefixes) | {self.prefix}) != len(self.eval_prefixes) + 1:
            raise ParamError(
                f"{section}.eval_prefixes",
                self.eval_prefixes,
                "prefixes must differ from each other and from prompts.prefix",
            )


@dataclass(frozen=True)
class ActivationsConfig:
    dtype: Literal["float32", "float16"] = "float32"
    """Storage dtype of the HDF5 files."""
    compute_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    """Forward-pass precision: ``float16``/``bfloat16`` run matrix products under torch
    autocast (weights stay float32); worth it on a GPU, and it changes the values stored."""
    processing: Literal["raw", "compat"] = "raw"
    """``raw`` Hugging Face numerics, or TransformerLens compatibility mode (folded LN)."""

    def validate(self, section: str) -> None:
        pass


@dataclass(frozen=True)
class ProbeConfig:
    token: Literal["last", "first", "all"] = "last"
    """Which tokens of each word the probe reads."""
    backend: Literal["sklearn", "torch"] = "sklearn"
    """``torch``: the same multinomial L2 logistic regression by full-batch L-BFGS (GPU when present)."""
    solver: Literal["lbfgs", "saga", "sag", "newton-cg", "newton-cholesky", "liblinear"] = "lbfgs"
    C: float = 1.0
    max_iter: int = 1000
    tol: float = 1e-4
    """Stop when the max-abs gradient is below this (scikit-learn's lbfgs criterion and default)."""
    multi_class: Literal["multinomial", "ovr"] = "multinomial"
    standardize: bool = True
    """Standardise features with the training mean and std (stored with the probe)."""
    seed: int = 0
    seeds: int = 3
    """Fits per layer with seeds seed, seed+1, ... when the solver is stochastic (sag, saga)."""
    control: bool = True
    """Also fit the control task (labels shuffled within absolute position) per layer."""
    train_balance: Literal["none", "position"] = "none"
    """``position``: train on a position-balanced subset of the training points."""

    def validate(self, section: str) -> None:
        if not self.C > 0:
            raise ParamError(f"{section}.C", self.C, "must be > 0")
        if not self.tol > 0:
            raise ParamError(f"{section}.tol", self.tol, "must be > 0")
        _positive(section, "max_iter", self.max_iter)
        _positive(section, "seeds", self.seeds)
        if self.backend == "torch" and self.multi_class != "multinomial":
            raise ParamError(f"{section}.multi_class", self.multi_class, "the torch backend is multinomial only")
        if self.solver == "liblinear" and self.multi_class == "multinomial":
            raise ParamError(f"{section}.solver", self.solver, "liblinear needs probe.multi_class: ovr")


@dataclass(frozen=True)
class ReportConfig:
    layers: list[int] | Literal["all"] = "all"
    """Layers that get the seed's key plot and a confusion matrix (0 = embeddings)."""

    def validate(self, section: str) -> None:
        if isinstance(self.layers, list):
            if not self.layers:
                raise ParamError(f"{section}.layers", self.layers, "give 'all' or a non-empty list of layers")
            for i, layer in enumerate(self.layers):
                if layer < 0:
                    raise ParamError(f"{section}.layers[{i}]", layer, "must be >= 0")


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "toy": ToyConfig,
    "dictionary": DictionaryConfig,
    "prompts": PromptsConfig,
    "activations": ActivationsConfig,
    "probe": ProbeConfig,
    "report": ReportConfig,
}


@dataclass(frozen=True)
class Params:
    """The sections a stage asked for; the others stay ``None`` so they cannot be read by mistake."""

    seed: int | None = None
    model: ModelConfig | None = None
    toy: ToyConfig | None = None
    dictionary: DictionaryConfig | None = None
    prompts: PromptsConfig | None = None
    activations: ActivationsConfig | None = None
    probe: ProbeConfig | None = None
    report: ReportConfig | None = None


def load_params(path: str | Path, sections: list[str], need_seed: bool = False) -> Params:
    """Read and validate the given sections of ``params.yaml`` (missing keys take defaults)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ParamError(str(path), "<file>", f"cannot read params: {err}".replace("\n", " ")) from err
    if not isinstance(raw, dict):
        raise ParamError(str(path), raw, "expected a mapping of sections")
    unknown = sorted(set(raw) - set(SECTIONS) - {"seed"})
    if unknown:
        raise ParamError(unknown[0], raw[unknown[0]], "unknown section; allowed: seed, " + ", ".join(SECTIONS))
    seed = None
    if need_seed:
        seed = _check_type("seed", raw.get("seed", 0), int)
        if seed < 0:
            raise ParamError("seed", seed, "must be >= 0")
    loaded = {name: from_mapping(SECTIONS[name], name, raw.get(name) or {}) for name in sections}
    return Params(seed=seed, **loaded)
