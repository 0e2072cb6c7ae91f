"""Validation of experiments.yaml: profiles, Table A.3 hyperparameters, protocols and table layouts.
A typo anywhere is refused with one sentence naming the key (e.g. 'profiles.quick.train.stpes').

The run settings under a profile's model/train/eval (and a table row's `set`) are checked against the
section classes of fqvae_cli.config, which loads this file and passes them in (validation context
`sections`), so this module does not import the config."""

from __future__ import annotations

from typing import Any

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

from fqvae_cli.data.catalog import DATASETS
from fqvae_cli.errors import ConfigError
from fqvae_cli.metrics import PROTOCOL_SIZES, REQUIRED_SIZES
from fqvae_cli.models.specs import ZOO

COLUMNS = ("dci_d", "dci_i", "dci_c", "infom", "infoe", "infoc", "mse")
COLUMN_TITLES = ("D", "I", "C", "InfoM", "InfoE", "InfoC", "MSE×10⁴")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_section(section: str, values: dict, info: ValidationInfo) -> dict:
    cls: Any = (info.context or {})["sections"][section]
    names = cls.setting_names()
    unknown = [k for k in values if k not in names]
    if unknown:
        raise ValueError(f"{section}.{unknown[0]}: unknown key (valid: {', '.join(names)})")
    try:
        cls.check_settings(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ValueError(f"{section}.{'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    return values


class ProfileSpec(_Strict):
    description: str = ""
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



def validate(data: dict, path: str, sections: dict[str, type[BaseModel]]) -> Experiments:
    """sections: fqvae_cli.config.SECTIONS (model, train, eval -> their settings classes)."""
    try:
        return Experiments.model_validate(data, context={"sections": sections})
    except ValidationError as exc:
        # A misspelt key shows up as both "unknown key" and "field required": name the misspelling.
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        err = errors[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        raise ConfigError(f"experiments file {path}: {where}: {msg}.") from None
