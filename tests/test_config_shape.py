"""A model's settings in one shape (nested by component) below the command line; the flat names of
--set and Table A.3 translated once; a profile that extends another."""

from __future__ import annotations

import pytest

from fqvae_cli.config import build_run_config
from fqvae_cli.errors import ConfigError
from fqvae_cli.experiments import load_experiments, parse_overrides, profile_of, resolve_run_config
from fqvae_cli.models.zoo import ModelConfig, nest


def test_resolved_configs_are_nested_and_round_trip():
    cfg = resolve_run_config("factorqvae", None, "quick", 0, parse_overrides(["model.beta=0.5", "gamma=0.25"]))
    stored = cfg.model_dump(mode="json")["model"]
    assert stored["bottleneck"] == {"kind": "relaxed_codebook", "codebook_size": 64, "codebook_dim": 1,
                                    "distance": "squared", "codebook_init": "normal"}
    assert stored["regularizers"] == [{"kind": "kl_uniform", "beta": 0.5},
                                      {"kind": "total_correlation", "gamma": 0.25, "disc_width": 256,
                                       "disc_layers": 6}]
    assert not set(stored) & {"beta", "gamma", "disc_width"}  # nothing flat is left in what a run stores
    assert build_run_config(cfg.model_dump(mode="json")) == cfg


def test_the_flat_form_is_only_an_edge():
    # ModelConfig itself takes the nested form; a flat dict is refused, not silently composed.
    with pytest.raises(ValueError):
        ModelConfig.model_validate({"name": "qvae", "beta": 1e-3})
    assert ModelConfig.from_flat(name="qvae", beta=1e-3) == ModelConfig.model_validate(nest({"name": "qvae",
                                                                                            "beta": 1e-3}))
    # components must be the model's own
    wrong = nest({"name": "qvae"})
    wrong["bottleneck"] = {"kind": "identity"}
    with pytest.raises(ValueError, match="model 'qvae' is relaxed_codebook"):
        ModelConfig.model_validate(wrong)
    with pytest.raises(ValueError, match=r"model 'qvae' is relaxed_codebook with \['kl_uniform'\], not "
                                         r"relaxed_codebook with \['kl_uniform', 'bio'\]"):
        ModelConfig.model_validate({**nest({"name": "qvae"}), "regularizers": [{"beta": 0.1}, {"kind": "bio"}]})


def test_the_components_kinds_come_from_the_zoo():
    # a nested config written without kinds takes them from the model's zoo line, and dumps them
    cfg = ModelConfig.model_validate({"name": "factorqvae", "bottleneck": {"codebook_size": 8},
                                      "regularizers": [{"beta": 0.5}, {"gamma": 0.25}]})
    stored = cfg.model_dump(mode="json")
    assert stored["bottleneck"] == {"kind": "relaxed_codebook", "codebook_size": 8, "codebook_dim": 1,
                                    "distance": "squared", "codebook_init": "normal"}
    assert stored["regularizers"] == [{"kind": "kl_uniform", "beta": 0.5},
                                      {"kind": "total_correlation", "gamma": 0.25, "disc_width": 1000,
                                       "disc_layers": 6}]


def test_a_stored_flat_config_of_an_early_version_still_loads():
    flat = {"model": {"name": "bioae", "trunk": "compact", "image_size": 32, "latent_dim": 12, "nonneg": 0.5,
                      "activity": 0.1, "beta": 0.3, "disc_width": 64}, "dataset": "synth3d", "profile": "quick"}
    cfg = build_run_config(flat)
    assert cfg.model.regularizer("bio").nonneg == 0.5 and cfg.model.regularizer("bio").activity == 0.1
    # beta and disc_width belong to no component of bioae: dropped, not stored
    stored = cfg.model.model_dump(mode="json")
    assert (stored["bottleneck"], stored["regularizers"]) == ({"kind": "identity"},
                                                              [{"kind": "bio", "nonneg": 0.5, "activity": 0.1}])
    with pytest.raises(ConfigError, match="invalid value for 'model.nonneg'"):
        build_run_config({"model": {"name": "bioae", "nonneg": -1}})


def test_a_profile_extends_another_key_by_key():
    exp = load_experiments()
    quick, cpu = profile_of(exp, "quick"), profile_of(exp, "cpu")
    assert cpu["train"] == {**quick["train"], "steps": 12000, "checkpoint_every": 2000, "log_every": 100}
    assert (cpu["model"], cpu["eval"], cpu["dataset"]) == (quick["model"], quick["eval"], quick["dataset"])
    a, b = resolve_run_config("qvae", None, "cpu"), resolve_run_config("qvae", None, "quick")
    assert a.model == b.model and a.train.steps == 12000 and a.train.anneal_steps == b.train.anneal_steps


def test_a_profile_that_extends_nothing_known_is_refused(tmp_path, monkeypatch):
    import yaml

    from fqvae_cli.experiments import experiments_path

    data = yaml.safe_load(experiments_path().read_text())
    data["profiles"]["cpu"]["extends"] = "nosuch"
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("FQVAE_EXPERIMENTS", str(path))
    with pytest.raises(ConfigError, match="profiles.cpu.extends: unknown profile 'nosuch'"):
        load_experiments()
