"""The notebook API: a finished pipeline directory, read by TransformerLens hook name.

    from emergent_pos.api import Pipeline

    p = Pipeline.open(".")                     # a clone after `dvc repro` (or `dvc pull`)
    x, tokens = p.activations("blocks.0.hook_resid_post", rows="probed")
    probe = p.probe("blocks.0.hook_resid_post")  # a fitted scikit-learn classifier
    probe.predict(x)

Everything here reads files the stages wrote (docs/pipeline.md, "File formats"); nothing is
recomputed except ``read_out`` (the probes applied to new text), which runs the model
(torch and TransformerLens are imported only then, so reading stays quick).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import LabelBinarizer, StandardScaler

from emergent_pos.activations.store import hook_path, read_meta, read_rows, stored_hooks, stored_rows
from emergent_pos.dataset.labels import Points
from emergent_pos.dataset.prompts import SPLITS, prompt_token_ids, prompts_path
from emergent_pos.errors import UserError
from emergent_pos.io.files import file_sha256, read_parquet
from emergent_pos.model.hooks import layer_of, residual_hooks
from emergent_pos.model.load import read_card
from emergent_pos.probes.linear import LinearProbe
from emergent_pos.probes.predictions import FITS, HELDOUT_PREDICTIONS, PREDICTIONS, probe_path
from emergent_pos.report.metrics import HEADLINE_COLUMNS

HEADLINE = Path("metrics/probes.json")
SUMMARY_COLUMNS = ["layer", *HEADLINE_COLUMNS]


def sklearn_probe(probe: LinearProbe, config: dict) -> FrozenEstimator:
    """A saved probe as scikit-learn's own objects: ``FrozenEstimator(make_pipeline(StandardScaler(),
    LogisticRegression(...)))`` carrying the saved mean, scale, ``coef_``, ``intercept_`` and
    ``classes_``, so ``predict``, ``predict_proba`` and ``decision_function`` take raw
    activations and ``clone(probe.estimator)`` is an unfitted pipeline with the same
    settings, to refit on other activations. A one-vs-rest probe (the seed's
    ``probe.multi_class: ovr``) is a ``OneVsRestClassifier`` of binary logistic regressions.
    """
    d = probe.coef.shape[1]
    scaler = StandardScaler(
        with_mean=bool(config.get("standardize", True)), with_std=bool(config.get("standardize", True))
    )
    scaler.mean_, scaler.scale_, scaler.var_ = probe.mean, probe.scale, probe.scale**2
    scaler.n_features_in_, scaler.n_samples_seen_ = d, 1
    settings = {k: config[k] for k in ("C", "tol", "max_iter", "solver") if k in config}
    if config.get("solver") not in (None, "lbfgs", "newton-cg", "newton-cholesky", "sag", "saga", "liblinear"):
        settings.pop("solver")
    if config.get("backend") == "torch":
        settings["solver"] = "lbfgs"  # the torch backend solves the same multinomial problem
    if config.get("multi_class") == "ovr":
        ovr = OneVsRestClassifier(LogisticRegression(**settings))
        ovr.label_binarizer_ = LabelBinarizer(sparse_output=True).fit(probe.classes)
        ovr.classes_ = probe.classes
        ovr.estimators_ = []
        for k in range(len(probe.classes)):
            binary = LogisticRegression(**settings)
            binary.coef_, binary.intercept_ = probe.coef[k : k + 1], probe.intercept[k : k + 1]
            binary.classes_, binary.n_features_in_ = np.array([0, 1]), d
            ovr.estimators_.append(binary)
        ovr.n_features_in_ = d
        head: Any = ovr
    else:
        head = LogisticRegression(**settings)
        head.coef_, head.intercept_, head.classes_, head.n_features_in_ = probe.coef, probe.intercept, probe.classes, d
        head.n_iter_ = np.array([probe.n_iter])
    return FrozenEstimator(make_pipeline(scaler, head))


@dataclass(frozen=True)
class Pipeline:
    """One pipeline directory (``dvc.yaml``, ``data/``, ``metrics/``)."""

    root: Path

    @classmethod
    def open(cls, root: str | Path = ".") -> Pipeline:
        """The pipeline directory at ``root`` or the nearest one above it (the one with a ``dvc.yaml``)."""
        start = Path(root).resolve()
        found = next((d for d in (start, *start.parents) if (d / "dvc.yaml").is_file()), None)
        if found is None:
            raise UserError(f"{start} is not inside a pipeline directory (no dvc.yaml here or above it)")
        if not (found / "data/model").exists():
            raise UserError(f"{found} has no data/model: run `dvc repro` (or `dvc pull`) there first")
        return cls(found)

    @property
    def card(self) -> dict:
        """The model card: name, revision, architecture, n_layers, d_model, n_ctx (None: no limit), init, seed."""
        return read_card(self.root / "data/model")

    @property
    def n_units(self) -> int:
        """The unit count the probes were trained on (the main evaluation set's)."""
        return int(self._fits()["n_units"])

    @property
    def scheme(self) -> str:
        """The reference scheme the prompts were built by (``prompts.scheme``)."""
        return str(self._fits()["scheme"])

    def layer_hooks(self) -> list[str]:
        """The residual-stream hook of each layer; index = layer (0 = embeddings)."""
        return residual_hooks(self.card["n_layers"])

    def hooks(self, split: str = "val") -> list[str]:
        """Every hook stored for ``split`` (the residual streams and any extra hooks)."""
        return stored_hooks(self._act_dir(split))

    def tokens(self, split: str = "val") -> pd.DataFrame:
        """The prompts table of ``split``: one row per token, in activation-row order."""
        return read_parquet(prompts_path(self._split(split), self.root / "data/prompts"))

    def activations(
        self, hook: str, split: str = "val", rows: str | np.ndarray | None = None, as_torch: bool = False
    ) -> tuple[Any, pd.DataFrame]:
        """Activations ``[n, *shape]`` of ``hook`` and the token rows they belong to.

        ``rows``: None for every stored token (every token unless ``activations.tokens``
        kept fewer), ``"probed"`` for the tokens the probes read (the pipeline's
        ``probe.token``), or sorted row numbers of the prompts table.
        """
        table = self.tokens(split)
        path = hook_path(self._act_dir(split), hook)
        if not path.exists():
            raise UserError(f"{path} is missing: stored hooks are {self.hooks(split)} (`dvc pull {path}`?)")
        if rows is None:
            rows = stored_rows(path)
        elif isinstance(rows, str):
            if rows != "probed":
                raise ValueError(f"rows={rows!r}: use None, 'probed' or row numbers")
            rows = Points.select(table, self._fits()["token"]).rows
        x = read_rows(path, np.asarray(rows), file_sha256(prompts_path(split, self.root / "data/prompts")), len(table))
        if as_torch:
            import torch

            x = torch.from_numpy(x)
        return x, table.iloc[np.asarray(rows)].reset_index(drop=True)

    def hook_meta(self, hook: str, split: str = "val") -> dict:
        """What the hook file records: model, hook, shape, dtypes, prompts hash, processing."""
        return vars(read_meta(hook_path(self._act_dir(split), hook)))

    def probe(self, layer_or_hook: int | str) -> FrozenEstimator:
        """The saved probe of a layer (0 = embeddings) or residual-stream hook, as scikit-learn's
        objects (``sklearn_probe``): a frozen StandardScaler + LogisticRegression pipeline."""
        hook = self.layer_hooks()[layer_or_hook] if isinstance(layer_or_hook, int) else layer_or_hook
        layer_of(hook)  # refuses a hook that has no probe
        probe = LinearProbe.load(probe_path(hook, self.root / "data/probes"))
        return sklearn_probe(probe, self._fits().get("config", {}))

    def predictions(self, split: str = "val") -> pd.DataFrame:
        """The probes stage's long table (one row per point and layer; docs/pipeline.md, "File formats")."""
        name = {"val": PREDICTIONS, "heldout": HELDOUT_PREDICTIONS}.get(split)
        if name is None:
            raise ValueError(f"split={split!r}: predictions exist for val and heldout")
        return read_parquet(self.root / "data/probes" / name)

    def metrics(self, name: str = "probes", rev: str | None = None) -> dict:
        """``metrics/{name}.json`` of the workspace, or of a git commit or DVC experiment."""
        path = f"metrics/{name}.json"
        if rev is None:
            return json.loads((self.root / path).read_text())
        return json.loads(git_show(self.root, rev, path))

    def summary(self, rev: str | None = None) -> pd.DataFrame:
        """README's headline table: one row per layer, indexed by layer."""
        rows = self.metrics("probes", rev)["layers"]
        return pd.DataFrame(rows)[SUMMARY_COLUMNS].set_index("layer")

    def read_out(self, text: str, layers: list[int] | None = None, device: str = "cpu") -> pd.DataFrame:
        """The probes applied to every token of ``text`` (the ``tokens`` stage's table)."""
        from emergent_pos.analysis.tokens import encode, predict_tokens, uses_bos
        from emergent_pos.model.load import load_bridge
        from emergent_pos.probes.linear import load_probes

        processing = (self._params().get("activations") or {}).get("processing", "raw")
        bridge = load_bridge(self.root / "data/model", device, processing)
        first = prompt_token_ids(self.tokens("val")[["position", "token_id"]])[0]
        ids = encode(bridge.tokenizer, text, uses_bos(first, bridge.tokenizer))
        return predict_tokens(bridge, load_probes(self.card["n_layers"], layers, self.root / "data/probes"), ids)

    def _split(self, split: str) -> str:
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: one of {', '.join(SPLITS)}")
        return split

    def _act_dir(self, split: str) -> Path:
        return self.root / "data/activations" / self._split(split)

    def _fits(self) -> dict:
        return json.loads((self.root / "data/probes" / FITS).read_text())

    def _params(self) -> dict:
        path = self.root / "params.yaml"
        return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def git_show(root: Path, rev: str, path: str) -> str:
    """A file as committed at ``rev``: a commit, branch or tag, or a DVC experiment's name."""
    ref = rev
    ok = subprocess.run(["git", "rev-parse", "--verify", "-q", f"{rev}^{{commit}}"], cwd=root, capture_output=True)
    if ok.returncode != 0:
        refs = subprocess.run(
            ["git", "for-each-ref", "--format=%(refname)", "refs/exps"], cwd=root, capture_output=True, text=True
        ).stdout.split()
        found = [r for r in refs if r.rsplit("/", 1)[-1] == rev]
        if not found:
            raise UserError(f"{rev!r} is neither a git revision nor a DVC experiment here (`dvc exp list`)")
        ref = found[0]
    out = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=root, capture_output=True, text=True)
    if out.returncode != 0:
        raise UserError(f"{rev} has no {path}")
    return out.stdout
