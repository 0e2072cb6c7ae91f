"""The model zoo: one line a model, as the paper lists them (a name, a bottleneck, its regularizers and the
settings particular to it); everything else about a model is derived from that line.

- Its Table A.3 settings are its components' fields marked TABLE_A3 (the per-dataset values live in
  experiments.yaml's `hyperparameters`).
- Its settings (ModelConfig) are the trunk's fields, then one settings object per component, nested:

    {"name": "factorqvae", "trunk": "compact", "image_size": 32, "latent_dim": 12, "width": null,
     "hidden": 128,
     "bottleneck": {"kind": "relaxed_codebook", "codebook_size": 64, "codebook_dim": 1, ...},
     "regularizers": [{"kind": "kl_uniform", "beta": 0.001},
                      {"kind": "total_correlation", "gamma": 0.0001, "disc_width": 1000, ...}]}

  This nested form is what a run stores. People write the settings flat, as Table A.3 and
  `--set model.beta=1e-3` name them; `nest` translates that form once, where it enters, sending each
  setting to the component of this model that has it. The components' kinds come from the zoo line.
- Its modules: `build_model` turns a ModelConfig into an Autoencoder.

Adding a model is a module (a bottleneck in fqvae_cli.models.bottlenecks, or a regularizer) and one line
in ZOO below."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from fqvae_cli.errors import ConfigError
from fqvae_cli.models.autoencoder import Autoencoder
from fqvae_cli.models.bottlenecks.base import Bottleneck, BottleneckKind
from fqvae_cli.models.bottlenecks.fixed_grid import FixedGrid
from fqvae_cli.models.bottlenecks.fsq import FSQ
from fqvae_cli.models.bottlenecks.gaussian import Gaussian
from fqvae_cli.models.bottlenecks.gumbel_categorical import GumbelCategorical
from fqvae_cli.models.bottlenecks.identity import Identity
from fqvae_cli.models.bottlenecks.per_latent_codebook import PerLatentCodebook
from fqvae_cli.models.bottlenecks.relaxed_codebook import RelaxedCodebook
from fqvae_cli.models.capacity import Capacity
from fqvae_cli.models.dip import DIP
from fqvae_cli.models.minibatch_tc import MinibatchTC
from fqvae_cli.models.regularizers import (
    BioPenalties,
    ComponentConfig,
    KLGaussian,
    KLUniform,
    QuantizeCommit,
    TotalCorrelationConfig,
)
from fqvae_cli.models.tripod import TripodTerms
from fqvae_cli.models.trunks import build_trunk

TC = TotalCorrelationConfig  # the TC term of Algorithm 1 (a discriminator, two half-batches per step)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    title: str  # as printed in the paper's tables
    bottleneck: type[Bottleneck]
    regularizers: tuple[type[ComponentConfig], ...] = ()
    defaults: dict = field(default_factory=dict)  # settings particular to this model (flat names)

    @property
    def hyperparameters(self) -> tuple[str, ...]:
        """The settings Table A.3 gives this model: its components' fields marked TABLE_A3."""
        classes = [*self.regularizers, self.bottleneck.config]
        return tuple(name for cls in classes for name, f in cls.model_fields.items()
                     if (f.json_schema_extra or {}).get("table_a3"))

    @property
    def kind(self) -> BottleneckKind:
        return self.bottleneck.kind

    @property
    def discrete(self) -> bool:
        return self.kind.discrete

    @property
    def total_correlation(self) -> bool:
        """Trained with Algorithm 1 (TC discriminator, two half-batches per step)."""
        return TC in self.regularizers

    @property
    def global_codebook(self) -> bool:
        return self.kind.global_codebook

    @property
    def encoder_output(self) -> str:
        """The encoder's output width (Appendix A.3's o) in terms of d, K and C."""
        return self.kind.encoder_output

    @property
    def parts(self) -> tuple[str, tuple[str, ...]]:
        """(bottleneck kind, regularizer kinds): the component kinds a stored config of this model holds."""
        return self.bottleneck.kind.name, tuple(r.kind_name() for r in self.regularizers)


def model(name: str, title: str, bottleneck: type[Bottleneck], *regularizers: type[ComponentConfig],
          **defaults: Any) -> ModelSpec:
    return ModelSpec(name, title, bottleneck, regularizers, defaults)


ZOO: dict[str, ModelSpec] = {
    s.name: s
    for s in [
        model("ae", "AE", Identity),
        model("betavae", "β-VAE", Gaussian, KLGaussian),
        model("factorvae", "FactorVAE", Gaussian, KLGaussian, TC),
        model("bioae", "BioAE", Identity, BioPenalties),
        model("qlae", "QLAE", PerLatentCodebook, QuantizeCommit),
        model("dvae", "dVAE", GumbelCategorical, KLUniform),
        model("qvae", "QVAE", RelaxedCodebook, KLUniform),
        model("factordvae", "FactordVAE", GumbelCategorical, KLUniform, TC),
        model("factorqvae", "FactorQVAE", RelaxedCodebook, KLUniform, TC),
        # Table 2: the same models with a K x C vector codebook (C > 1).
        model("vqvae", "VQVAE", RelaxedCodebook, KLUniform, codebook_dim=8),
        model("factorvqvae", "FactorVQVAE", RelaxedCodebook, KLUniform, TC, codebook_dim=8),
        # Beyond the paper's tables: finite scalar quantization (Mentzer et al. 2023), no codebook loss.
        model("fsq", "FSQ", FSQ),
        # disentanglement_lib's model set (Locatello et al. 2019), with its Bernoulli reconstruction loss
        model("betatcvae", "β-TCVAE", Gaussian, MinibatchTC, reconstruction="bernoulli"),
        model("dipvae1", "DIP-VAE-I", Gaussian, DIP, reconstruction="bernoulli"),
        model("dipvae2", "DIP-VAE-II", Gaussian, DIP, dip_type="ii", lambda_d_factor=1.0, reconstruction="bernoulli"),
        model("annealedvae", "AnnealedVAE", Gaussian, Capacity, reconstruction="bernoulli"),
        # Tripod (Hsu et al. 2024): a fixed grid, KDE multiinformation and the normalized Hessian penalty,
        # with its code's per-pixel mean binary cross-entropy
        model("tripod", "Tripod", FixedGrid, TripodTerms, reconstruction="bernoulli_mean"),
        # its ablation without the quantization leg (the reference's quantize_latents: False, z unbounded)
        model("tripod_continuous", "Tripod w/o quantization", Identity, TripodTerms,
              reconstruction="bernoulli_mean"),
    ]
}

# Every component some model uses, by kind name (what a stored config's "kind" says).
BOTTLENECKS: dict[str, type[Bottleneck]] = {s.bottleneck.kind.name: s.bottleneck for s in ZOO.values()}
REGULARIZERS: dict[str, type[ComponentConfig]] = {r.kind_name(): r for s in ZOO.values() for r in s.regularizers}
COMPONENTS: list[type[ComponentConfig]] = [b.config for b in BOTTLENECKS.values()] + list(REGULARIZERS.values())


def get_model_spec(name: str) -> ModelSpec:
    try:
        return ZOO[name]
    except KeyError:
        raise ConfigError(f"unknown model '{name}'; choose one of: {', '.join(ZOO)}.") from None


def describe_models(hyperparameters: dict, datasets: dict[str, str]) -> list[dict]:
    """Every zoo model as plain data for `fqvae models`: its composition and, per dataset, the Table A.3
    values from experiments.yaml's `hyperparameters` mapping. datasets: dataset name -> its Table A.3
    column. None where the table has no entry for a model that takes hyperparameters (the defaults apply)."""
    rows = []
    for spec in ZOO.values():
        per_dataset: dict[str, dict | None] = {}
        for ds, column_name in datasets.items():
            entry = ((hyperparameters or {}).get(column_name) or {}).get(spec.name)
            per_dataset[ds] = dict(entry or {}) if (entry is not None or not spec.hyperparameters) else None
        bottleneck, regularizers = spec.parts
        rows.append({"name": spec.name, "title": spec.title, "bottleneck": bottleneck,
                     "regularizers": list(regularizers), "encoder_output": spec.encoder_output,
                     "discrete": spec.discrete, "total_correlation": spec.total_correlation,
                     "defaults": dict(spec.defaults), "hyperparameter_names": list(spec.hyperparameters),
                     "hyperparameters": per_dataset})
    return rows


# ---------------------------------------------------------------------------------------------- settings

def _union(classes: list[type]) -> Any:
    """A pydantic union of component settings told apart by their `kind` field."""
    return Annotated[Union[tuple(classes)], Field(discriminator="kind")]  # noqa: UP007 - built at run time


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
    the nested form above. Which components they are is the zoo line's: a component written without its
    kind gets it from there, and one of another kind is refused."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str = "factorqvae"
    trunk: Literal["compact", "paper"] = "compact"
    image_size: int = Field(32, description="input height = width; set from the dataset")
    latent_dim: int | None = Field(None, gt=0, description="d; default 2 x number of factors")
    width: int | None = Field(None, gt=0, description="trunk channels; default 128 (paper n) or 32 (compact)")
    hidden: int = Field(128, gt=0, description="width of the dense layers between trunk and latent")
    reconstruction: Literal["mse", "bernoulli", "bernoulli_mean"] = Field(
        "mse", description="mean squared error (the paper's), Bernoulli cross-entropy summed over pixels "
        "(disentanglement_lib's) or averaged over them (Tripod's)")
    bottleneck: _union([b.config for b in BOTTLENECKS.values()])  # type: ignore[valid-type]
    regularizers: list[_union(list(REGULARIZERS.values()))] = Field(default_factory=list)  # type: ignore[valid-type]

    @model_validator(mode="before")
    @classmethod
    def _components_of_the_model(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "bottleneck" not in data:
            return data
        name = data.get("name", cls.model_fields["name"].default)
        if name not in ZOO:
            raise ValueError(f"unknown model '{name}'; choose one of: {', '.join(ZOO)}")
        want_b, want_r = ZOO[name].parts
        b, regs = data["bottleneck"], data.get("regularizers", [])
        if not isinstance(b, dict) or not isinstance(regs, list) or not all(isinstance(r, dict) for r in regs):
            return data  # not the nested form: the fields' own validation says what is wrong
        given = [r.get("kind", want_r[i] if i < len(want_r) else "?") for i, r in enumerate(regs)]
        kinds = (b.get("kind", want_b), tuple(given))
        if kinds != (want_b, want_r):
            raise ValueError(f"model '{name}' is {want_b} with {list(want_r)}, not {kinds[0]} with {list(kinds[1])}")
        return {**data, "bottleneck": {"kind": want_b, **b},
                "regularizers": [{"kind": k, **r} for r, k in zip(regs, want_r, strict=True)]}

    @classmethod
    def from_flat(cls, **settings: Any) -> ModelConfig:
        """The settings written flat (`ModelConfig.from_flat(name="qvae", beta=1e-3)`), nested."""
        return cls.model_validate(nest(settings))

    def regularizer(self, kind: str) -> ComponentConfig | None:
        """The settings of this model's regularizer `kind`, or None when it has none."""
        return next((r for r in self.regularizers if r.kind == kind), None)


TRUNK_FIELDS = tuple(k for k in ModelConfig.model_fields if k not in ("bottleneck", "regularizers"))
# Every name `--set model.<name>` accepts: the trunk's fields, then every component's.
SETTING_NAMES = TRUNK_FIELDS + tuple(k for k in OWNERS if k not in TRUNK_FIELDS)


def nest(flat: dict) -> dict:
    """Flat settings of model flat["name"] -> the nested form, over the defaults of the model's zoo line.
    A setting goes to the component of this model that has it; one that only other models' components
    have (disc_width for a model without a TC term, as a profile sets it for every model) is dropped; a
    name no component has is kept, so validation refuses it by name."""
    name = flat.get("name", ModelConfig.model_fields["name"].default)
    if name not in ZOO:
        raise ValueError(f"unknown model '{name}'; choose one of: {', '.join(ZOO)}")
    spec = ZOO[name]
    flat = {**spec.defaults, **flat}
    trunk = {k: v for k, v in flat.items() if k in TRUNK_FIELDS or k not in OWNERS}

    def component(cls: type[ComponentConfig]) -> dict:
        return {"kind": cls.kind_name(), **{k: v for k, v in flat.items() if k in cls.model_fields and k != "kind"}}

    return {**trunk, "bottleneck": component(spec.bottleneck.config),
            "regularizers": [component(r) for r in spec.regularizers]}


def is_nested(model: dict) -> bool:
    return "bottleneck" in model or "regularizers" in model


_TRUNK = {k: TypeAdapter(Annotated[f.annotation, f]) for k, f in ModelConfig.model_fields.items() if k in TRUNK_FIELDS}


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


# ---------------------------------------------------------------------------------------------- modules

def build_model(cfg: ModelConfig) -> Autoencoder:
    """The model named cfg.name with cfg's trunk, sizes and loss weights, on the CPU (move it after)."""
    spec = get_model_spec(cfg.name)
    d = cfg.latent_dim
    if d is None:
        raise ConfigError("model.latent_dim is not set; it defaults to 2 x the dataset's number of factors.")
    # Regularizers that act on the bottleneck's own statistics; total correlation is attached separately.
    regs = [r for r in cfg.regularizers if not isinstance(r, TC)]
    bottleneck = spec.bottleneck.from_config(d, cfg.bottleneck, regs)
    encoder, decoder = build_trunk(cfg, bottleneck.enc_dim, bottleneck.z_dim)
    tc_cfg = next((r for r in cfg.regularizers if isinstance(r, TC)), None)
    tc = tc_cfg.build(d, bottleneck.tc_group) if tc_cfg is not None else None
    return Autoencoder(cfg, spec, encoder, bottleneck, decoder, tc)


# The largest model a run may have. 10^9 parameters take 16 GB in float32 for the weights, their
# gradients and Adam's two moments; the paper's largest model has 2.8 x 10^7. A typo such as
# latent_dim=1e9 is refused before a run exists instead of failing (or swapping) at allocation.
MAX_PARAMETERS = 1_000_000_000


@lru_cache(maxsize=256)
def _parameter_count(settings: str) -> int:
    import torch

    cfg = ModelConfig.model_validate_json(settings)
    with torch.device("meta"):  # shapes only: nothing is allocated, however large
        model = build_model(cfg)
    return sum(p.numel() for p in model.parameters())


def parameter_count(cfg: ModelConfig) -> int:
    """The number of parameters of the model `cfg` describes, counted without allocating them."""
    return _parameter_count(cfg.model_dump_json())


def check_model_size(cfg: ModelConfig) -> int:
    """The parameter count, refused (one sentence) above MAX_PARAMETERS or when the sizes cannot even
    be laid out. Every command that creates or queues a run calls this before the run exists."""
    sizes = f"latent_dim {cfg.latent_dim}, width {cfg.width or 'default'}, hidden {cfg.hidden}"
    try:
        n = parameter_count(cfg)
    except (RuntimeError, OverflowError, ValueError, TypeError, MemoryError):
        # torch's own message here is a C++ stack; the sizes say what is wrong.
        raise ConfigError(f"model {cfg.name} with {sizes} cannot be built: a layer would be larger than PyTorch "
                          "can index; choose smaller sizes.") from None
    if n > MAX_PARAMETERS:
        raise ConfigError(f"model {cfg.name} with {sizes} would have {n:,} parameters, more than the limit of "
                          f"{MAX_PARAMETERS:,} (16 GB of weights, gradients and Adam moments); choose smaller "
                          "sizes.")
    return n
