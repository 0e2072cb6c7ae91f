"""A model's settings in one shape: the trunk's fields, then one settings object per component.

    {"name": "factorqvae", "trunk": "compact", "image_size": 32, "latent_dim": 12, "width": null,
     "hidden": 128,
     "bottleneck": {"kind": "relaxed_codebook", "codebook_size": 64, "codebook_dim": 1, ...},
     "regularizers": [{"kind": "kl_uniform", "beta": 0.001},
                      {"kind": "total_correlation", "gamma": 0.0001, "disc_width": 1000, ...}]}

This nested form is what a run stores and what everything below the command line reads. People write the
settings flat, as Table A.3 and `--set model.beta=1e-3` name them; `nest` translates that form, once, where
it enters (fqvae_cli.config.resolve_run_config, and runs stored flat by early versions), sending each
setting to the component of this model that has it. `flat` is the inverse view, for printing."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from fqvae_cli.models.bottlenecks import BOTTLENECKS
from fqvae_cli.models.component import ComponentConfig
from fqvae_cli.models.specs import REGULARIZERS, ZOO


def _union(classes: list[type]) -> Any:
    """A pydantic union of component settings told apart by their `kind` field."""
    return Annotated[Union[tuple(classes)], Field(discriminator="kind")]  # noqa: UP007 - built at run time


BottleneckSettings = _union([cls.config for cls in BOTTLENECKS.values()])
RegularizerSettings = _union(list(REGULARIZERS.values()))
COMPONENTS: list[type[ComponentConfig]] = [b.config for b in BOTTLENECKS.values()] + list(REGULARIZERS.values())


def _owners() -> dict[str, list[type[ComponentConfig]]]:
    """Flat setting name -> the component settings classes that have it (beta: both KL terms)."""
    owners: dict[str, list[type[ComponentConfig]]] = {}
    for cls in COMPONENTS:
        for name in cls.model_fields:
            if name != "kind":
                owners.setdefault(name, []).append(cls)
    return owners


OWNERS = _owners()


class ModelConfig(BaseModel):
    """The architecture (trunk fields) composed with the model's bottleneck and regularizer settings, in
    the nested form above; the components must be the ones the model's spec (specs.ZOO) names."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str = "factorqvae"
    trunk: Literal["compact", "paper"] = "compact"
    image_size: int = Field(32, description="input height = width; set from the dataset")
    latent_dim: int | None = Field(None, gt=0, description="d; default 2 x number of factors")
    width: int | None = Field(None, gt=0, description="trunk channels; default 128 (paper n) or 32 (compact)")
    hidden: int = Field(128, gt=0, description="width of the dense layers between trunk and latent")
    bottleneck: BottleneckSettings
    regularizers: list[RegularizerSettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _components_of_the_model(self) -> ModelConfig:
        if self.name not in ZOO:
            raise ValueError(f"unknown model '{self.name}'; choose one of: {', '.join(ZOO)}")
        spec = ZOO[self.name]
        kinds = (self.bottleneck.kind, tuple(r.kind for r in self.regularizers))
        if kinds != (spec.bottleneck, spec.regularizers):
            raise ValueError(f"model '{self.name}' is {spec.bottleneck} with {list(spec.regularizers)}, not "
                             f"{kinds[0]} with {list(kinds[1])}")
        return self

    @classmethod
    def from_flat(cls, **settings: Any) -> ModelConfig:
        """The settings written flat (`ModelConfig.from_flat(name="qvae", beta=1e-3)`), nested."""
        return cls.model_validate(nest(settings))

    def regularizer(self, kind: str) -> ComponentConfig | None:
        """The settings of this model's regularizer `kind`, or None when it has none."""
        return next((r for r in self.regularizers if r.kind == kind), None)

    def flat(self) -> dict:
        """Every setting flat, as `--set model.<name>` and Table A.3 write them."""
        data = self.model_dump(mode="json", exclude={"bottleneck", "regularizers"})
        for component in (self.bottleneck, *self.regularizers):
            data.update(component.settings())
        return data


TRUNK_FIELDS = tuple(k for k in ModelConfig.model_fields if k not in ("bottleneck", "regularizers"))
# Every name `--set model.<name>` accepts: the trunk's fields, then every component's.
SETTING_NAMES = TRUNK_FIELDS + tuple(k for k in OWNERS if k not in TRUNK_FIELDS)


def nest(flat: dict) -> dict:
    """Flat settings of model flat["name"] -> the nested form. A setting goes to the component of this
    model that has it; one that only other models' components have (disc_width for a model without a TC
    term, as a profile sets it for every model) is dropped; a name no component has is kept, so
    validation refuses it by name."""
    name = flat.get("name", ModelConfig.model_fields["name"].default)
    if name not in ZOO:
        raise ValueError(f"unknown model '{name}'; choose one of: {', '.join(ZOO)}")
    spec = ZOO[name]
    trunk = {k: v for k, v in flat.items() if k in TRUNK_FIELDS or k not in OWNERS}

    def component(kind: str, cls: type[ComponentConfig]) -> dict:
        return {"kind": kind, **{k: v for k, v in flat.items() if k in cls.model_fields and k != "kind"}}

    return {**trunk, "bottleneck": component(spec.bottleneck, BOTTLENECKS[spec.bottleneck].config),
            "regularizers": [component(r, REGULARIZERS[r]) for r in spec.regularizers]}


def is_nested(model: dict) -> bool:
    return "bottleneck" in model or "regularizers" in model


def check_flat(values: dict) -> None:
    """Validate flat settings on their own (a profile, a Table A.3 entry or a table row of
    experiments.yaml), each against every component that has it; ValueError('<setting>: <why>')."""
    for key, value in values.items():
        if key not in SETTING_NAMES:
            raise ValueError(f"{key}: unknown key (valid: {', '.join(SETTING_NAMES)})")
        try:
            if key in TRUNK_FIELDS:
                _TRUNK[key].validate_python(value)
            for owner in OWNERS.get(key, []):
                owner.model_validate({key: value})
        except ValidationError as exc:
            raise ValueError(f"{key}: {exc.errors()[0]['msg']}") from None


_TRUNK = {k: TypeAdapter(Annotated[f.annotation, f]) for k, f in ModelConfig.model_fields.items() if k in TRUNK_FIELDS}
