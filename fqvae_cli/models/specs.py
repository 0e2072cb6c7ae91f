"""The model zoo as data: each name maps to a bottleneck, regularizers and defaults (one line a model).

What a bottleneck is (discrete or not, encoder width, global codebook) is read from its own module's
kind record (fqvae_cli.models.bottlenecks); the regularizers are named by their kind. The config, the
tables and `fqvae models` read this; `fqvae_cli.models.zoo.build_model` turns a ModelConfig into modules."""

from __future__ import annotations

from dataclasses import dataclass, field

from fqvae_cli.data.catalog import DATASETS
from fqvae_cli.errors import ConfigError
from fqvae_cli.models.bottlenecks import BOTTLENECKS, BottleneckKind
from fqvae_cli.models.component import ComponentConfig
from fqvae_cli.models.discriminator import TotalCorrelationConfig
from fqvae_cli.models.regularizers import BioPenalties, KLGaussian, KLUniform, QuantizeCommit

# Regularizer kinds -> their settings (each regularizer is its own settings, except the TC term, which
# builds a discriminator module).
REGULARIZERS: dict[str, type[ComponentConfig]] = {
    cls.kind_name(): cls for cls in (KLGaussian, KLUniform, BioPenalties, QuantizeCommit, TotalCorrelationConfig)
}
KL_GAUSSIAN, KL_UNIFORM = KLGaussian.kind_name(), KLUniform.kind_name()
BIO, QUANTIZE_COMMIT = BioPenalties.kind_name(), QuantizeCommit.kind_name()
TOTAL_CORRELATION = TotalCorrelationConfig.kind_name()


@dataclass(frozen=True)
class ModelSpec:
    name: str
    title: str  # as printed in the paper's tables
    bottleneck: str  # a key of BOTTLENECKS
    regularizers: tuple[str, ...]  # keys of REGULARIZERS
    defaults: dict = field(default_factory=dict)  # settings particular to this model (flat names)

    def __post_init__(self) -> None:
        unknown = [k for k in (self.bottleneck, *self.regularizers) if k not in BOTTLENECKS and k not in REGULARIZERS]
        if unknown:
            raise ValueError(f"model '{self.name}': unknown component '{unknown[0]}'")

    @property
    def hyperparameters(self) -> tuple[str, ...]:
        """The settings Table A.3 gives this model: its components' fields marked TABLE_A3."""
        classes = [REGULARIZERS[r] for r in self.regularizers] + [BOTTLENECKS[self.bottleneck].config]
        return tuple(name for cls in classes for name, f in cls.model_fields.items()
                     if (f.json_schema_extra or {}).get("table_a3"))

    @property
    def kind(self) -> BottleneckKind:
        return BOTTLENECKS[self.bottleneck].kind

    @property
    def discrete(self) -> bool:
        return self.kind.discrete

    @property
    def total_correlation(self) -> bool:
        """Trained with Algorithm 1 (TC discriminator, two half-batches per step)."""
        return TOTAL_CORRELATION in self.regularizers

    @property
    def global_codebook(self) -> bool:
        return self.kind.global_codebook

    @property
    def encoder_output(self) -> str:
        """The encoder's output width (Appendix A.3's o) in terms of d, K and C."""
        return self.kind.encoder_output


ZOO: dict[str, ModelSpec] = {
    s.name: s
    for s in [
        ModelSpec("ae", "AE", "identity", ()),
        ModelSpec("betavae", "β-VAE", "gaussian", (KL_GAUSSIAN,)),
        ModelSpec("factorvae", "FactorVAE", "gaussian", (KL_GAUSSIAN, TOTAL_CORRELATION)),
        ModelSpec("bioae", "BioAE", "identity", (BIO,)),
        ModelSpec("qlae", "QLAE", "per_latent_codebook", (QUANTIZE_COMMIT,)),
        ModelSpec("dvae", "dVAE", "gumbel_categorical", (KL_UNIFORM,)),
        ModelSpec("qvae", "QVAE", "relaxed_codebook", (KL_UNIFORM,)),
        ModelSpec("factordvae", "FactordVAE", "gumbel_categorical", (KL_UNIFORM, TOTAL_CORRELATION)),
        ModelSpec("factorqvae", "FactorQVAE", "relaxed_codebook", (KL_UNIFORM, TOTAL_CORRELATION)),
        # Table 2: the same models with a K x C vector codebook (C > 1).
        ModelSpec("vqvae", "VQVAE", "relaxed_codebook", (KL_UNIFORM,), {"codebook_dim": 8}),
        ModelSpec("factorvqvae", "FactorVQVAE", "relaxed_codebook", (KL_UNIFORM, TOTAL_CORRELATION),
                  {"codebook_dim": 8}),
        # Beyond the paper's tables: finite scalar quantization (Mentzer et al. 2023), no codebook loss.
        ModelSpec("fsq", "FSQ", "fsq", ()),
    ]
}

def get_model_spec(name: str) -> ModelSpec:
    try:
        return ZOO[name]
    except KeyError:
        raise ConfigError(f"unknown model '{name}'; choose one of: {', '.join(ZOO)}.") from None


def describe_models(hyperparameters: dict) -> list[dict]:
    """Every zoo model as plain data for `fqvae models`: its composition and, per dataset, the Table A.3
    values from experiments.yaml's `hyperparameters` mapping (None where the table has no entry for a
    model that takes hyperparameters; the ModelConfig defaults then apply)."""
    rows = []
    for spec in ZOO.values():
        per_dataset: dict[str, dict | None] = {}
        for ds in DATASETS.values():
            column = (hyperparameters or {}).get(ds.hyperparameters) or {}
            entry = column.get(spec.name)
            per_dataset[ds.name] = dict(entry or {}) if (entry is not None or not spec.hyperparameters) else None
        rows.append({
            "name": spec.name,
            "title": spec.title,
            "bottleneck": spec.bottleneck,
            "regularizers": list(spec.regularizers),
            "encoder_output": spec.encoder_output,
            "discrete": spec.discrete,
            "total_correlation": spec.total_correlation,
            "defaults": dict(spec.defaults),
            "hyperparameter_names": list(spec.hyperparameters),
            "hyperparameters": per_dataset,
        })
    return rows
