"""Every option of a run as pydantic models, experiments.yaml loading, and `--set key=value` overrides.

Resolution order (later wins): the defaults below < the profile in experiments.yaml < the Table A.3
hyperparameters for (dataset, model) < the model's own defaults (e.g. codebook_dim 8 for vqvae) only
where the profile/table do not set them < command-line options and `--set` overrides.
The resolved RunConfig is what a run stores (registry row and beside its checkpoints)."""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fqvae_cli import experiments
from fqvae_cli.data.catalog import DATASETS, DEFAULT_DATASET, get_dataset_spec
from fqvae_cli.errors import ConfigError
from fqvae_cli.inputs import SEED_MAX
from fqvae_cli.models.bottlenecks import BOTTLENECKS
from fqvae_cli.models.component import ComponentConfig
from fqvae_cli.models.specs import REGULARIZERS, ZOO, get_model_spec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @classmethod
    def setting_names(cls) -> list[str]:
        """The keys `--set section.<key>` and experiments.yaml accept."""
        return list(cls.model_fields)

    @classmethod
    def check_settings(cls, values: dict) -> None:
        """Validate a partial section (experiments.yaml); raises pydantic's ValidationError."""
        cls.model_validate(values)


def _union(classes: list[type]) -> Any:
    """A pydantic union of component settings told apart by their `kind` field."""
    return Annotated[Union[tuple(classes)], Field(discriminator="kind")]  # noqa: UP007 - built at run time


BottleneckSettings = _union([cls.config for cls in BOTTLENECKS.values()])
RegularizerSettings = _union(list(REGULARIZERS.values()))


def _component_fields() -> dict[str, list[type[ComponentConfig]]]:
    """Setting name -> the component settings classes that have it (e.g. beta: both KL terms)."""
    owners: dict[str, list[type[ComponentConfig]]] = {}
    for cls in [b.config for b in BOTTLENECKS.values()] + list(REGULARIZERS.values()):
        for name in cls.model_fields:
            if name != "kind":
                owners.setdefault(name, []).append(cls)
    return owners


COMPONENT_FIELDS = _component_fields()


class ModelConfig(_Strict):
    """The architecture (trunk fields here) composed with the model's bottleneck and regularizer settings.

    Settings are written flat, as Table A.3 and `--set model.beta=...` name them; the model's spec picks
    the components, and each flat setting goes to the component that has it (one that belongs only to
    other models' components, like disc_width for a model without a TC term, is ignored). The stored
    (dumped) form is nested: {..., "bottleneck": {"kind": ..., ...}, "regularizers": [{"kind": ...}]}.
    Runs stored before the composition hold the flat form, which still loads."""

    name: str = "factorqvae"
    trunk: Literal["compact", "paper"] = "compact"
    image_size: int = Field(32, description="input height = width; set from the dataset")
    latent_dim: int | None = Field(None, gt=0, description="d; default 2 x number of factors")
    width: int | None = Field(None, gt=0, description="trunk channels; default 128 (paper n) or 32 (compact)")
    hidden: int = Field(128, gt=0, description="width of the dense layers between trunk and latent")
    bottleneck: BottleneckSettings
    regularizers: list[RegularizerSettings] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _compose(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        name = data.get("name", cls.model_fields["name"].default)
        if name not in ZOO:
            raise ValueError(f"unknown model '{name}'; choose one of: {', '.join(ZOO)}")
        spec = ZOO[name]
        own = {k: v for k, v in data.items() if k in cls.model_fields and k not in ("bottleneck", "regularizers")}
        flat = {k: v for k, v in data.items() if k not in cls.model_fields}
        unknown = {k: v for k, v in flat.items() if k not in COMPONENT_FIELDS}  # refused by extra="forbid"
        nested = {_settings(c).get("kind"): _settings(c) for c in data.get("regularizers") or []}
        nested[spec.bottleneck] = _settings(data.get("bottleneck"))

        def settings_of(kind: str, settings_cls: type[ComponentConfig]) -> dict:
            given = nested.get(kind) if nested.get(kind, {}).get("kind", kind) == kind else {}
            mine = {k: v for k, v in flat.items() if k in settings_cls.model_fields and k != "kind"}
            return {**(given or {}), **mine, "kind": kind}

        return {**own, **unknown,
                "bottleneck": settings_of(spec.bottleneck, BOTTLENECKS[spec.bottleneck].config),
                "regularizers": [settings_of(r, REGULARIZERS[r]) for r in spec.regularizers]}

    def regularizer(self, kind: str) -> ComponentConfig | None:
        """The settings of this model's regularizer `kind`, or None when it has none."""
        return next((r for r in self.regularizers if r.kind == kind), None)

    def settings(self) -> dict:
        """Every setting flat, as `--set model.<name>` and Table A.3 write them."""
        data = self.model_dump(mode="json", exclude={"bottleneck", "regularizers"})
        for component in (self.bottleneck, *self.regularizers):
            data.update(component.settings())
        return data

    @classmethod
    def setting_names(cls) -> list[str]:
        own = [k for k in cls.model_fields if k not in ("bottleneck", "regularizers")]
        return own + [k for k in COMPONENT_FIELDS if k not in own]

    @classmethod
    def check_settings(cls, values: dict) -> None:
        """Validate flat settings on their own (experiments.yaml), each against every component that has
        it; raises pydantic's ValidationError located at the setting."""
        own = {k: v for k, v in values.items() if k not in COMPONENT_FIELDS}
        cls.model_validate(own)
        for key, value in values.items():
            for owner in COMPONENT_FIELDS.get(key, []):
                owner.model_validate({key: value})


def _settings(component: Any) -> dict:
    if isinstance(component, BaseModel):
        return component.model_dump()
    return dict(component or {})


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
    checkpoint_every: int = Field(500, gt=0)
    keep_checkpoints: int = Field(2, gt=0)
    log_every: int = Field(50, gt=0)
    # Speed settings: none of them changes what a run computes beyond floating-point rounding, so table
    # cells do not tell runs apart by them. bf16 changes the rounding more than the others (within the
    # spread of seeds on the compact trunk, docs/quick_profile.md); the run's record says which it used.
    bf16: bool | Literal["auto"] = Field(
        False, description="bfloat16 autocast for the trunk (losses and KL stay float32); auto: where the device "
                           "computes bfloat16 natively (AVX512-BF16 or AMX CPUs, CUDA), float32 elsewhere, "
                           "decided when the run first starts and kept when it resumes")
    compile: bool = Field(False, description="torch.compile the VAE and discriminator steps (warm-up once per run)")
    channels_last: bool = Field(True, description="NHWC memory layout for images and conv weights")
    cudnn_benchmark: bool = Field(True, description="CUDA: let cuDNN pick the fastest conv algorithms")
    tf32: bool = Field(True, description="CUDA: TF32 tensor cores for float32 matmuls and convs")
    data_on_device: Literal["auto", "always", "never"] = Field(
        "auto", description="hold the whole train split as one uint8 tensor on the device; auto = CUDA with room")
    threads: int | None = Field(
        None, gt=0, description="torch CPU threads; default all cores. At most the cores the process may use: a "
                                "larger value is lowered to that, with a warning, by the machine that runs the "
                                "run (a queued run may execute on a smaller machine than the one that queued it)")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.lr_min > self.lr:
            raise ValueError(f"lr_min ({self.lr_min}) must not exceed lr ({self.lr})")
        return self

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
    model: ModelConfig = Field(default_factory=ModelConfig)
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
TOP_LEVEL = ("dataset", "profile", "seed")


# ---------------------------------------------------------------- experiments.yaml


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
    experiments.validate(data, path, SECTIONS)
    return data


def load_experiments() -> dict:
    """The experiments.yaml mapping, validated (fqvae_cli.experiments) once per file version."""
    p = experiments_path()
    if p.is_dir():
        raise ConfigError(f"experiments file {p} is a folder; FQVAE_EXPERIMENTS must name a .yaml file.")
    try:
        mtime = p.stat().st_mtime
    except FileNotFoundError:
        raise ConfigError(f"experiments file {p} does not exist.") from None
    return _load_yaml(str(p), mtime)


# ---------------------------------------------------------------- overrides


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
        owners = [s for s, cls in SECTIONS.items() if parts[0] in cls.setting_names()]
        if len(owners) == 1:
            return (owners[0], parts[0])
        if len(owners) > 1:
            raise ConfigError(f"'{key}' is ambiguous; write one of: {', '.join(f'{o}.{key}' for o in owners)}.")
        raise ConfigError(f"unknown setting '{key}'; {_valid_keys_hint()}")
    if len(parts) == 2 and parts[0] in SECTIONS and parts[1] in SECTIONS[parts[0]].setting_names():
        return parts
    raise ConfigError(f"unknown setting '{key}'; {_valid_keys_hint()}")


def _valid_keys_hint() -> str:
    keys = list(TOP_LEVEL) + [f"{s}.{f}" for s, cls in SECTIONS.items() for f in cls.setting_names()]
    return "valid settings: " + ", ".join(keys) + "."


def _takes_bool(path: tuple[str, ...]) -> bool:
    """Whether the setting at `path` is a true/false one; pydantic would quietly read true as 1 for a
    number, so --set refuses true/false anywhere else."""
    if len(path) == 1:
        fields = [RunConfig.model_fields[path[0]]]
    else:
        cls = SECTIONS[path[0]]
        fields = [cls.model_fields[path[1]]] if path[1] in cls.model_fields else \
            [owner.model_fields[path[1]] for owner in COMPONENT_FIELDS.get(path[1], [])]
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
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_validation_sentence(exc)) from None


def run_protocol(config: dict) -> str:
    """The metric protocol a stored run config asks for (eval.protocol): what `evaluate` and `encode` use
    unless told otherwise, and what the run's table shows."""
    return build_run_config(config).eval.protocol


def resolve_run_config(
    model: str,
    dataset: str | None = None,
    profile: str = "quick",
    seed: int = 0,
    overrides: dict | None = None,
) -> RunConfig:
    """Compose the run configuration from experiments.yaml and overrides (see the module docstring)."""
    spec = get_model_spec(model)
    exp = load_experiments()
    profiles = exp.get("profiles", {})
    if profile not in profiles:
        raise ConfigError(f"unknown profile '{profile}'; choose one of: {', '.join(profiles)}.")
    prof = profiles[profile] or {}
    dataset = dataset or prof.get("dataset") or DEFAULT_DATASET
    ds = get_dataset_spec(dataset)

    data: dict = {"model": {"name": model}, "dataset": dataset, "profile": profile, "seed": seed}
    data["model"]["image_size"] = ds.image_size
    data["model"]["latent_dim"] = ds.latent_dim
    data["model"].update(spec.defaults)
    for section in SECTIONS:
        if section in prof:
            data = deep_merge(data, {section: prof[section]})
    table = (exp.get("hyperparameters", {}) or {}).get(ds.hyperparameters, {}) or {}
    data = deep_merge(data, {"model": table.get(model, {}) or {}})
    if overrides:
        data = deep_merge(data, overrides)
    return build_run_config(data)
