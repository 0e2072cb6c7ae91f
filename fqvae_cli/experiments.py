"""experiments.yaml (the profiles, Table A.3, the metric protocols, the paper's table layouts) and `--set`
overrides: where a run's configuration comes from, and where the flat way people write a model's settings
is translated, once, into the nested form a run stores (fqvae_cli.models.zoo.nest).

Resolution order (later wins): the defaults of fqvae_cli.config < the model's own defaults (e.g.
codebook_dim 8 for vqvae) < the profile < the Table A.3 hyperparameters for (dataset, model) <
command-line options and `--set` overrides.

A typo anywhere in experiments.yaml is refused with one sentence naming the key (e.g.
'profiles.quick.train.stpes')."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from fqvae_cli.config import (
    SECTION_KEYS,
    SECTIONS,
    TOP_LEVEL,
    EvalConfig,
    RunConfig,
    TrainConfig,
    _valid_keys_hint,
    build_run_config,
)
from fqvae_cli.data.catalog import DATASETS, DEFAULT_DATASET, get_dataset_spec
from fqvae_cli.errors import ConfigError
from fqvae_cli.metrics import DEFAULT_METRICS, METRICS, PROTOCOL_SIZES, REQUIRED_SIZES, parse_metrics, record
from fqvae_cli.models.zoo import OWNERS, ZOO, check_flat, get_model_spec, nest

# The paper's table: the columns of its metrics (on their records in fqvae_cli.metrics), then the MSE.
COLUMNS = tuple(k for name in DEFAULT_METRICS for k in METRICS[name].columns) + ("mse",)
COLUMN_TITLES = tuple(t for name in DEFAULT_METRICS for t in METRICS[name].columns.values()) + ("MSE×10⁴",)


def extra_columns(metrics: Sequence[str] | None) -> list[tuple[str, str]]:
    """(key, title) of the columns the chosen metrics add beside the paper's (DCI and InfoMEC are there)."""
    return [(key, title) for name in parse_metrics(metrics) if name not in DEFAULT_METRICS
            for key, title in METRICS[name].columns.items()] if metrics else []


def paper_columns(dci_estimator: str = "gbt") -> tuple[list[str], list[str]]:
    """(keys, titles) of the paper's columns, DCI's as `dci_estimator` records them (a table never mixes)."""
    renamed = dict(zip(METRICS["dci"].columns, record("dci", dci_estimator).columns.items(), strict=True))
    pairs = [renamed.get(k, (k, title)) for k, title in zip(COLUMNS, COLUMN_TITLES, strict=True)]
    return [k for k, _ in pairs], [title for _, title in pairs]


def table_columns(metrics: Sequence[str] | None, dci_estimator: str = "gbt") -> tuple[list[str], list[str]]:
    """(keys, titles) of a table: the paper's (DCI's by `dci_estimator`), then the chosen metrics' columns."""
    (keys, titles), extra = paper_columns(dci_estimator), extra_columns(metrics)
    return keys + [k for k, _ in extra], titles + [title for _, title in extra]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_section(section: str, values: dict, info: ValidationInfo | None = None) -> dict:
    """A profile's (or a table row's, or a Table A.3 entry's) settings of one section, checked key by key:
    the model section in its flat form (models.zoo), train and eval against their classes."""
    if section == "model":
        try:
            check_flat(values)
        except ValueError as exc:
            raise ValueError(f"model.{exc}") from None
        return values
    cls = {"train": TrainConfig, "eval": EvalConfig}[section]
    names = cls.setting_names()
    unknown = [k for k in values if k not in names]
    if unknown:
        raise ValueError(f"{section}.{unknown[0]}: unknown key (valid: {', '.join(names)})")
    for key, value in values.items():
        try:
            cls.__pydantic_validator__.validate_assignment(cls.model_construct(), key, value)
        except ValidationError as exc:
            raise ValueError(f"{section}.{key}: {exc.errors()[0]['msg']}") from None
    return values


class ProfileSpec(_Strict):
    description: str = ""
    extends: str | None = None  # another profile this one starts from (its sections merged key by key)
    dataset: str | None = None
    model: dict = Field(default_factory=dict)
    train: dict = Field(default_factory=dict)
    eval: dict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _sections(self, info: ValidationInfo) -> ProfileSpec:
        for name in ("model", "train", "eval"):
            _check_section(name, getattr(self, name), info)
        return self


# A protocol's sizes are the names the metrics read (fqvae_cli.metrics.METRICS): those of the paper's DCI
# and InfoMEC are required, every other metric's are optional (a metric asked for on a protocol without
# its sizes is refused, naming the missing one).
ProtocolSpec = create_model(
    "ProtocolSpec", __base__=_Strict,
    **{name: (int, Field(gt=0)) if name in REQUIRED_SIZES else (int | None, Field(None, gt=0))
       for name in PROTOCOL_SIZES})


class RowSpec(_Strict):
    key: str
    label: str
    model: str
    set: dict = Field(default_factory=dict)

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        if v not in ZOO:
            raise ValueError(f"unknown model '{v}' (valid: {', '.join(ZOO)})")
        return v

    @field_validator("set")
    @classmethod
    def _set(cls, v: dict, info: ValidationInfo) -> dict:
        return _check_section("model", v, info)


class TableSpec(_Strict):
    title: str
    datasets: list[str]
    rows: list[RowSpec]
    published: dict[str, dict[str, list[float]]] = Field(default_factory=dict)
    # Metrics shown beside the paper's columns unless a command names others (`--metrics`).
    metrics: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _published(self) -> TableSpec:
        keys = {r.key for r in self.rows}
        for ds, cells in self.published.items():
            for key, values in cells.items():
                if key not in keys:
                    raise ValueError(f"published.{ds}.{key}: no row has this key")
                if len(values) != len(COLUMNS):
                    raise ValueError(f"published.{ds}.{key}: needs {len(COLUMNS)} values ({', '.join(COLUMN_TITLES)})")
        return self


class Experiments(_Strict):
    profiles: dict[str, ProfileSpec]
    hyperparameters: dict[str, dict[str, dict]]
    protocols: dict[str, ProtocolSpec]
    tables: dict[str, TableSpec]

    @model_validator(mode="after")
    def _extends(self) -> Experiments:
        for name in self.profiles:
            seen = [name]
            while (base := self.profiles[seen[-1]].extends) is not None:
                if base not in self.profiles:
                    raise ValueError(f"profiles.{seen[-1]}.extends: unknown profile '{base}'")
                if base in seen:
                    raise ValueError(f"profiles.{name}.extends: a cycle ({' -> '.join(seen + [base])})")
                seen.append(base)
        return self

    @field_validator("hyperparameters")
    @classmethod
    def _hp(cls, v: dict, info: ValidationInfo) -> dict:
        # A column is a dataset's Table A.3 column; a misspelt one (shapes3D) would silently give zero weights.
        columns = sorted({spec.hyperparameters for spec in DATASETS.values()})
        for column, models in v.items():
            if column not in columns:
                raise ValueError(f"{column}: unknown dataset column (valid: {', '.join(columns)})")
            for model, values in (models or {}).items():
                if model not in ZOO:
                    raise ValueError(f"{column}.{model}: unknown model (valid: {', '.join(ZOO)})")
                try:
                    _check_section("model", values or {}, info)
                except ValueError as exc:
                    raise ValueError(f"{column}.{model}: {exc}") from None
        return v



def validate(data: dict, path: str) -> Experiments:
    try:
        return Experiments.model_validate(data)
    except ValidationError as exc:
        # A misspelt key shows up as both "unknown key" and "field required": name the misspelling.
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        err = errors[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        raise ConfigError(f"experiments file {path}: {where}: {msg}.") from None


# ---------------------------------------------------------------- the file


def experiments_path() -> Path:
    env = os.environ.get("FQVAE_EXPERIMENTS")
    if env:
        return Path(env).expanduser()
    return Path(__file__).with_name("experiments.yaml")


@lru_cache(maxsize=4)
def _load_yaml(path: str, mtime: float) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"experiments file {path} does not exist.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"experiments file {path} is not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise ConfigError(f"experiments file {path} must hold a mapping at the top level.")
    validate(data, path)
    return data


def load_experiments() -> dict:
    """The experiments.yaml mapping, validated once per file version."""
    p = experiments_path()
    if p.is_dir():
        raise ConfigError(f"experiments file {p} is a folder; FQVAE_EXPERIMENTS must name a .yaml file.")
    try:
        mtime = p.stat().st_mtime
    except FileNotFoundError:
        raise ConfigError(f"experiments file {p} does not exist.") from None
    return _load_yaml(str(p), mtime)


# ---------------------------------------------------------------- the edge: --set overrides


def parse_value(text: str) -> Any:
    """A --set value: an int, a float (1e-4 included, which YAML 1.1 would keep as a string),
    true/false, null, else the string itself."""
    t = text.strip()
    for conv in (int, float):
        try:
            return conv(t)
        except ValueError:
            pass
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none", "~"):
        return None
    return t


def _resolve_key(key: str) -> tuple[str, ...]:
    """'model.beta' -> ('model', 'beta'); a bare 'beta' is looked up in every section."""
    parts = tuple(key.split("."))
    if len(parts) == 1:
        if parts[0] in TOP_LEVEL:
            return parts
        owners = [s for s, names in SECTION_KEYS.items() if parts[0] in names]
        if len(owners) == 1:
            return (owners[0], parts[0])
        if len(owners) > 1:
            raise ConfigError(f"'{key}' is ambiguous; write one of: {', '.join(f'{o}.{key}' for o in owners)}.")
        raise ConfigError(f"unknown setting '{key}'; {_valid_keys_hint()}")
    if len(parts) == 2 and parts[0] in SECTION_KEYS and parts[1] in SECTION_KEYS[parts[0]]:
        return parts
    raise ConfigError(f"unknown setting '{key}'; {_valid_keys_hint()}")


def _takes_bool(path: tuple[str, ...]) -> bool:
    """Whether the setting at `path` is a true/false one; pydantic would quietly read true as 1 for a
    number, so --set refuses true/false anywhere else."""
    if len(path) == 1:
        fields = [RunConfig.model_fields[path[0]]]
    else:
        cls = SECTIONS[path[0]]
        fields = [cls.model_fields[path[1]]] if path[1] in cls.model_fields else \
            [owner.model_fields[path[1]] for owner in OWNERS.get(path[1], [])]
    return any(f.annotation is bool or bool in get_args(f.annotation) for f in fields)


def parse_overrides(pairs: list[str]) -> dict:
    """['model.beta=1e-3', 'steps=100'] -> nested dict {'model': {'beta': 0.001}, 'train': {'steps': 100}}."""
    out: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got '{pair}'.")
        key, _, raw = pair.partition("=")
        path = _resolve_key(key.strip())
        value = parse_value(raw.strip())
        if isinstance(value, bool) and not _takes_bool(path):
            raise ConfigError(f"--set {key.strip()}: '{raw.strip()}' is not a valid value; "
                              f"{'.'.join(path)} is not a true/false setting.")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"--set {key}: the value must be a finite number.")
        node = out
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = value
    return out


def deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def profile_of(exp: dict, name: str) -> dict:
    """The profile `name` of experiments.yaml, or one sentence naming the valid ones."""
    profiles = exp.get("profiles", {})
    if name not in profiles:
        raise ConfigError(f"unknown profile '{name}'; choose one of: {', '.join(profiles)}.")
    prof = dict(profiles[name] or {})
    base = prof.pop("extends", None)
    return deep_merge(profile_of(exp, base), prof) if base else prof


def table_of(exp: dict, number: str) -> dict:
    """The layout of paper table `number`, or one sentence naming the valid ones."""
    if number not in exp["tables"]:
        raise ConfigError(f"unknown paper table '{number}'; choose one of: {', '.join(exp['tables'])}.")
    return exp["tables"][number]


def resolve_run_config(
    model: str,
    dataset: str | None = None,
    profile: str = "quick",
    seed: int = 0,
    overrides: dict | None = None,
) -> RunConfig:
    """Compose the run configuration from experiments.yaml and overrides (see the module docstring): the
    model's flat settings are gathered in order, then nested once."""
    spec = get_model_spec(model)
    exp = load_experiments()
    prof = profile_of(exp, profile)
    dataset = dataset or prof.get("dataset") or DEFAULT_DATASET
    ds = get_dataset_spec(dataset)
    table = (exp.get("hyperparameters", {}) or {}).get(ds.hyperparameters, {}) or {}
    overrides = overrides or {}

    flat = {"name": model, "image_size": ds.image_size, "latent_dim": ds.latent_dim, **spec.defaults,
            **(prof.get("model") or {}), **(table.get(model) or {}), **(overrides.get("model") or {})}
    data: dict = {"dataset": dataset, "profile": profile, "seed": seed}
    for section in ("train", "eval"):
        data[section] = deep_merge(prof.get(section) or {}, overrides.get(section) or {})
    data.update({k: v for k, v in overrides.items() if k in TOP_LEVEL})
    try:
        data["model"] = nest(flat)
    except ValueError as exc:
        raise ConfigError(str(exc) + ".") from None
    return build_run_config(data)
