"""Every option of a run, in the one shape a run stores: pydantic models of its sections (model, train,
eval), validated with unknown keys refused. The model section's own shape (the trunk's fields and one
settings object per component) lives with the models, fqvae_cli.models.zoo.

Where a configuration comes from (experiments.yaml profiles, Table A.3, `--set`) is
fqvae_cli.experiments; `build_run_config` reads one back as a run stored it, in any earlier shape."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fqvae_cli.data.catalog import DATASETS
from fqvae_cli.errors import ConfigError
from fqvae_cli.inputs import SEED_MAX
from fqvae_cli.models.zoo import SETTING_NAMES, ModelConfig, is_nested, nest


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @classmethod
    def setting_names(cls) -> list[str]:
        """The keys `--set section.<key>` and experiments.yaml accept."""
        return list(cls.model_fields)


RUNTIME = {"runtime": True}


def runtime_only(field: str) -> bool:
    """A TrainConfig setting that changes how fast a run trains, not what it computes beyond rounding:
    table cells do not tell runs apart by it."""
    extra = TrainConfig.model_fields[field].json_schema_extra or {}
    return bool(extra.get("runtime"))


class TrainConfig(_Strict):
    steps: int = Field(2000, gt=0, description="training iterations (batches of the VAE optimizer)")
    batch_size: int = Field(64, gt=0, description="B; Factor models draw 2B images per iteration")
    lr: float = Field(1e-3, gt=0)
    lr_min: float = Field(1.25e-6, ge=0)
    anneal_steps: int | None = Field(50_000, gt=0, description="cosine span, then held at lr_min")
    temperature_decay: float = Field(1e-5, ge=0, description="Gumbel temperature tau = exp(-decay * t)")
    schedule_reference_steps: int | None = Field(
        None, gt=0,
        description="if set, anneal_steps and temperature_decay are rescaled by reference/steps so a short run "
                    "keeps the schedule shape of a reference-length run (quick profile: 100000)")
    optimizer: Literal["adam", "adamw"] = Field(
        "adam", description="adamw follows the original QLAE recipe: decoupled weight decay on weights only "
                            "(no codebooks, no biases) and gradients clipped elementwise at 1.0")
    weight_decay: float = Field(0.0, ge=0)
    step_convention: Literal["iterations", "optimizer_steps"] = Field(
        "iterations",
        description="iterations: one step = one VAE update (+ one discriminator update for Factor models); "
                    "optimizer_steps: Lightning's count, where a Factor model's step counts both updates")
    checkpoint_every: int = Field(500, gt=0, json_schema_extra=RUNTIME)
    keep_checkpoints: int = Field(2, gt=0, json_schema_extra=RUNTIME)
    log_every: int = Field(50, gt=0, json_schema_extra=RUNTIME)
    snapshot_every: int | None = Field(
        None, ge=0, description="iterations between snapshots (a PNG of held-out images, their reconstructions and "
                                "a traversal, in the run's snapshots folder); default about ten per run "
                                "(steps/10); 0: none", json_schema_extra=RUNTIME)
    tensorboard: bool = Field(False, description="also write losses, codebook health, snapshots and hyperparameters "
                                                 "as TensorBoard events into the run's tensorboard folder (needs "
                                                 "pip install 'fqvae[tensorboard]')", json_schema_extra=RUNTIME)
    # Bookkeeping above and speed settings below are RUNTIME: none of them changes what a run computes
    # beyond floating-point rounding, so table cells do not tell runs apart by them. bf16 changes the
    # rounding more than the others (within the spread of seeds on the compact trunk,
    # docs/quick_profile.md); the run's record says which it used.
    bf16: bool | Literal["auto"] = Field(
        False, description="bfloat16 autocast for the trunk (losses and KL stay float32); auto: where the device "
                           "computes bfloat16 natively (AVX512-BF16 or AMX CPUs, CUDA), float32 elsewhere, "
                           "decided when the run first starts and kept when it resumes", json_schema_extra=RUNTIME)
    compile: bool = Field(False, description="torch.compile the VAE and discriminator steps (warm-up once per run)",
                          json_schema_extra=RUNTIME)
    channels_last: bool = Field(True, description="NHWC memory layout for images and conv weights",
                                json_schema_extra=RUNTIME)
    cudnn_benchmark: bool = Field(True, description="CUDA: let cuDNN pick the fastest conv algorithms",
                                  json_schema_extra=RUNTIME)
    tf32: bool = Field(True, description="CUDA: TF32 tensor cores for float32 matmuls and convs",
                       json_schema_extra=RUNTIME)
    data_on_device: Literal["auto", "always", "never"] = Field(
        "auto", description="hold the whole train split as one uint8 tensor on the device; auto = CUDA with room",
        json_schema_extra=RUNTIME)
    threads: int | None = Field(
        None, gt=0, description="torch CPU threads; default all cores. At most the cores the process may use: a "
                                "larger value is lowered to that, with a warning, by the machine that runs the "
                                "run (a queued run may execute on a smaller machine than the one that queued it)",
        json_schema_extra=RUNTIME)

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.lr_min > self.lr:
            raise ValueError(f"lr_min ({self.lr_min}) must not exceed lr ({self.lr})")
        return self

    def snapshot_interval(self, iterations: int) -> int:
        """Iterations between snapshots of a run of `iterations` (0: none): snapshot_every, or about ten per run."""
        if self.snapshot_every is not None:
            return self.snapshot_every
        return max(1, iterations // 10)

    def effective_schedule(self) -> tuple[int, float]:
        """(anneal_steps, temperature_decay) after rescaling to the run length."""
        anneal = self.anneal_steps or self.steps
        decay = self.temperature_decay
        if self.schedule_reference_steps:
            scale = self.schedule_reference_steps / self.steps
            anneal = max(1, round(anneal / scale))
            decay = decay * scale
        return anneal, decay


class EvalConfig(_Strict):
    protocol: str = Field("paper", description="metric protocol (sample sizes in experiments.yaml `protocols`)")
    n_neighbors: int = Field(3, gt=0, description="kNN MI estimator for continuous codes (3 authors, 10 original)")
    mse_images: int | None = Field(None, gt=0, description="cap on test images for MSE; default the whole split")
    seed: int = Field(0, ge=0, le=SEED_MAX)
    batch_size: int = Field(1024, gt=0)


class RunConfig(_Strict):
    model: ModelConfig = Field(default_factory=ModelConfig.from_flat)
    dataset: str = "synth3d"
    profile: str = "quick"
    seed: int = Field(0, ge=0, le=SEED_MAX, description="seed of initialisation, data order and noise")
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        if v not in DATASETS:
            raise ValueError(f"unknown dataset '{v}'; choose one of: {', '.join(DATASETS)}")
        return v


SECTIONS = {"model": ModelConfig, "train": TrainConfig, "eval": EvalConfig}
# What `--set section.<key>` accepts in each section (the model's flat names, see models.zoo).
SECTION_KEYS = {"model": list(SETTING_NAMES), "train": TrainConfig.setting_names(),
                "eval": EvalConfig.setting_names()}
TOP_LEVEL = ("dataset", "profile", "seed")


def _valid_keys_hint() -> str:
    keys = list(TOP_LEVEL) + [f"{s}.{f}" for s, names in SECTION_KEYS.items() for f in names]
    return "valid settings: " + ", ".join(keys) + "."


def _validation_sentence(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    if len(loc) > 2 and loc[:2] in (["model", "bottleneck"], ["model", "regularizers"]):
        loc = ["model", loc[-1]]  # a component's setting, named as it is written: model.<setting>
    where = ".".join(loc) or "config"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if err["type"] == "extra_forbidden":
        return f"unknown setting '{where}'; {_valid_keys_hint()}"
    return f"invalid value for '{where}': {msg}."


def build_run_config(data: dict) -> RunConfig:
    """A stored (or resolved) run configuration, validated. Runs stored by early versions hold the model's
    settings flat; they are nested here, the one place that reads that shape back."""
    model = data.get("model") if isinstance(data, dict) else None
    if isinstance(model, dict) and not is_nested(model):
        data = {**data, "model": nest(model)}
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_validation_sentence(exc)) from None


def run_protocol(config: dict) -> str:
    """The metric protocol a stored run config asks for (eval.protocol): what `evaluate` and `encode` use
    unless told otherwise, and what the run's table shows."""
    return build_run_config(config).eval.protocol


