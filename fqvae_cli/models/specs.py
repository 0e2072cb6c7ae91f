"""The model zoo as data: each name of the paper maps to a bottleneck and a set of regularizers.

Torch-free on purpose: the CLI, config validation and the tables read this without importing torch.
`fqvae_cli.models.zoo.build_model` turns a spec plus a ModelConfig into modules."""

from __future__ import annotations

from dataclasses import dataclass, field

from fqvae_cli.errors import ConfigError

# Bottleneck kinds (fqvae_cli.models.bottlenecks)
IDENTITY = "identity"
GAUSSIAN = "gaussian"
RELAXED_CODEBOOK = "relaxed_codebook"  # QVAE: logits = -distance(z_e, global codebook)
GUMBEL_CATEGORICAL = "gumbel_categorical"  # dVAE: encoder emits logits over the global codebook
PER_LATENT_CODEBOOK = "per_latent_codebook"  # QLAE: one scalar codebook per latent, straight-through

# Regularizer kinds (fqvae_cli.models.regularizers)
KL_GAUSSIAN = "kl_gaussian"
KL_UNIFORM = "kl_uniform"
TOTAL_CORRELATION = "total_correlation"
BIO = "bio"
QUANTIZE_COMMIT = "quantize_commit"


ENCODER_OUTPUT = {
    IDENTITY: "d",
    GAUSSIAN: "2d",
    RELAXED_CODEBOOK: "d*C",
    GUMBEL_CATEGORICAL: "d*K",
    PER_LATENT_CODEBOOK: "d",
}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    title: str  # as printed in the paper's tables
    bottleneck: str
    regularizers: tuple[str, ...]
    hyperparameters: tuple[str, ...]  # the ModelConfig fields Table A.3 sets for this model
    defaults: dict = field(default_factory=dict)  # ModelConfig defaults particular to this model

    @property
    def discrete(self) -> bool:
        return self.bottleneck in (RELAXED_CODEBOOK, GUMBEL_CATEGORICAL, PER_LATENT_CODEBOOK)

    @property
    def factor(self) -> bool:
        """Trained with Algorithm 1 (TC discriminator, two half-batches per step)."""
        return TOTAL_CORRELATION in self.regularizers

    @property
    def global_codebook(self) -> bool:
        return self.bottleneck in (RELAXED_CODEBOOK, GUMBEL_CATEGORICAL)

    @property
    def encoder_output(self) -> str:
        """The encoder's output width (Appendix A.3's o) in terms of d, K and C."""
        return ENCODER_OUTPUT[self.bottleneck]


ZOO: dict[str, ModelSpec] = {
    s.name: s
    for s in [
        ModelSpec("ae", "AE", IDENTITY, (), ()),
        ModelSpec("betavae", "β-VAE", GAUSSIAN, (KL_GAUSSIAN,), ("beta",)),
        ModelSpec("factorvae", "FactorVAE", GAUSSIAN, (KL_GAUSSIAN, TOTAL_CORRELATION), ("beta", "gamma")),
        ModelSpec("bioae", "BioAE", IDENTITY, (BIO,), ("nonneg", "activity")),
        ModelSpec("qlae", "QLAE", PER_LATENT_CODEBOOK, (QUANTIZE_COMMIT,), ("quantize", "commit", "n_values")),
        ModelSpec("dvae", "dVAE", GUMBEL_CATEGORICAL, (KL_UNIFORM,), ("beta",)),
        ModelSpec("qvae", "QVAE", RELAXED_CODEBOOK, (KL_UNIFORM,), ("beta",)),
        ModelSpec("factordvae", "FactordVAE", GUMBEL_CATEGORICAL, (KL_UNIFORM, TOTAL_CORRELATION),
                  ("beta", "gamma")),
        ModelSpec("factorqvae", "FactorQVAE", RELAXED_CODEBOOK, (KL_UNIFORM, TOTAL_CORRELATION),
                  ("beta", "gamma")),
        # Table 2: the same models with a K x C vector codebook (C > 1).
        ModelSpec("vqvae", "VQVAE", RELAXED_CODEBOOK, (KL_UNIFORM,), ("beta",), {"codebook_dim": 8}),
        ModelSpec("factorvqvae", "FactorVQVAE", RELAXED_CODEBOOK, (KL_UNIFORM, TOTAL_CORRELATION),
                  ("beta", "gamma"), {"codebook_dim": 8}),
    ]
}

TABLE1_MODELS = ("ae", "betavae", "factorvae", "bioae", "qlae", "dvae", "qvae", "factordvae", "factorqvae")


def get_model_spec(name: str) -> ModelSpec:
    try:
        return ZOO[name]
    except KeyError:
        raise ConfigError(f"unknown model '{name}'; choose one of: {', '.join(ZOO)}.") from None


def describe_models(hyperparameters: dict) -> list[dict]:
    """Every zoo model as plain data for `fqvae models`: its composition and, per dataset, the Table A.3
    values from experiments.yaml's `hyperparameters` mapping (None where the table has no entry for a
    model that takes hyperparameters; the ModelConfig defaults then apply)."""
    from fqvae_cli.data.catalog import DATASETS

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
            "factor": spec.factor,
            "defaults": dict(spec.defaults),
            "hyperparameter_names": list(spec.hyperparameters),
            "hyperparameters": per_dataset,
        })
    return rows
