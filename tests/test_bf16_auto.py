"""`train.bf16: auto` (the quick and cpu profiles): bfloat16 autocast only where the device computes it
natively; the run's stored config says which arithmetic it used, and a resume keeps it."""

from __future__ import annotations

import pytest
from helpers import TINY


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_settled_when_the_run_starts_and_recorded(cli, small_data, monkeypatch, native):
    from fqvae_cli.registry.store import Registry
    from fqvae_cli.training import loop

    monkeypatch.setattr(loop, "native_bf16", lambda device: native)
    res = cli("train", "--model", "ae", *TINY, "--set", "train.bf16=auto", "--name", "r")
    assert res.exit_code == 0, res.stderr
    with Registry() as reg:
        assert reg.get_run("r").config["train"]["bf16"] is native


def test_the_quick_profile_asks_for_auto_and_cells_ignore_the_arithmetic():
    from fqvae_cli.experiments import resolve_run_config
    from fqvae_cli.runs.cell_sources import training_setup

    cfg = resolve_run_config("factorqvae", None, "quick", 0, {})
    assert cfg.train.bf16 == "auto"
    stored = cfg.model_dump(mode="json")
    stored["train"]["bf16"] = True
    assert training_setup(stored) == training_setup(cfg)


def test_forced_bf16_on_an_emulating_cpu_warns(cli, small_data, monkeypatch):
    from fqvae_cli.training import loop

    monkeypatch.setattr(loop, "native_bf16", lambda device: False)
    res = cli("train", "--model", "ae", *TINY, "--set", "train.bf16=true")
    assert res.exit_code == 0, res.stderr
    assert "bf16 autocast is emulated on this CPU" in res.stderr
