"""Validation of experiments.yaml: profiles, Table A.3 hyperparameters, protocols and table layouts.
A typo anywhere is refused with one sentence naming the key (e.g. 'profiles.quick.train.stpes')."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fqvae_cli.errors import ConfigError

COLUMNS = ("dci_d", "dci_i", "dci_c", "infom", "infoe", "infoc", "mse")
COLUMN_TITLES = ("D", "I", "C", "InfoM", "InfoE", "InfoC", "MSE×10⁴")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_section(section: str, values: dict) -> dict:
    from fqvae_cli.config import SECTIONS

    cls = SECTIONS[section]
    unknown = [k for k in values if k not in cls.model_fields]
    if unknown:
        raise ValueError(f"{section}.{unknown[0]}: unknown key (valid: {', '.join(cls.model_fields)})")
    try:
        cls.model_validate(values)
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
    def _sections(self) -> ProfileSpec:
        for name in ("model", "train", "eval"):
            _check_section(name, getattr(self, name))
        return self


class ProtocolSpec(_Strict):
    dci_train: int = Field(gt=0)
    dci_test: int = Field(gt=0)
    infomec_n: int = Field(gt=0)


class RowSpec(_Strict):
    key: str
    label: str
    model: str
    set: dict = Field(default_factory=dict)

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        from fqvae_cli.models.specs import ZOO

        if v not in ZOO:
            raise ValueError(f"unknown model '{v}' (valid: {', '.join(ZOO)})")
        return v

    @field_validator("set")
    @classmethod
    def _set(cls, v: dict) -> dict:
        return _check_section("model", v)


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
    def _hp(cls, v: dict) -> dict:
        from fqvae_cli.models.specs import ZOO

        for column, models in v.items():
            for model, values in (models or {}).items():
                if model not in ZOO:
                    raise ValueError(f"{column}.{model}: unknown model (valid: {', '.join(ZOO)})")
                try:
                    _check_section("model", values or {})
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
