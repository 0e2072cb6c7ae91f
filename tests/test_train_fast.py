"""Every speed setting of `train.*` on CPU: the same iterations give the same losses as plain float32,
exactly where the arithmetic is the same and within a stated tolerance where it is not.

Tolerances (relative, on the total loss of each of 6 iterations of a compact-trunk model):
- channels_last, data_on_device: 1e-4 (the same maths in another memory order);
- compile: 1e-3 (fused kernels reorder float32 sums);
- bf16: 5e-2 (bfloat16 keeps 8 bits of mantissa in the trunk; losses and KL stay float32)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fqvae_cli.data.sampler import BatchSampler
from fqvae_cli.device import resolve_device
from fqvae_cli.experiments import resolve_run_config
from fqvae_cli.models.zoo import build_model
from fqvae_cli.training.loop import data_on_device
from fqvae_cli.training.step import Optimizers, TrainStep

ITERS = 6
BATCH = 16


class Pool:
    """Random uint8 images read like a prepared dataset."""

    def __init__(self, n: int = 256, size: int = 32):
        self.images = np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)

    def images_at(self, idx):
        return self.images[np.asarray(idx)]


def _losses(model_name: str, after_step=None, **train) -> list[float]:
    """Total loss of each of ITERS iterations; the temperature changes every step, as in training."""
    cpu = resolve_device("cpu")
    cfg = resolve_run_config(model_name, "synth3d", "quick", 0, {
        "model": {"disc_width": 32},
        "train": {"batch_size": BATCH, "bf16": False, "channels_last": False, "compile": False, **train}})
    torch.manual_seed(0)
    model = build_model(cfg.model)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    factor = model.spec.total_correlation
    pool = Pool()
    resident = data_on_device(cfg.train.data_on_device, cpu, len(pool.images), pool.images[0].nbytes)
    sampler = BatchSampler(pool, np.arange(len(pool.images)), 2 * BATCH if factor else BATCH, seed=0,
                           device=cpu, on_device=resident, channels_last=cfg.train.channels_last)
    step = TrainStep(model, Optimizers.for_model(model, cfg.train, factor), cfg.train, cpu, BATCH)
    model.train()
    out = []
    for it in range(ITERS):
        parts = step(sampler.batch(it), 1e-3, 0.9 - 0.05 * it)
        out.append(float(parts["total"].detach()))
        if factor:
            assert np.isfinite(float(parts["disc"].detach()))
        if after_step is not None:
            after_step(it)
    return out


_ONCE: dict = {}


def _losses_once(model_name: str, **train) -> list[float]:
    """_losses, computed once per module for each model and setting (the float32 reference serves every
    case of its model)."""
    key = (model_name, tuple(sorted(train.items())))
    if key not in _ONCE:
        _ONCE[key] = _losses(model_name, **train)
    return list(_ONCE[key])


SETTINGS = {
    "channels_last": ({"channels_last": True}, 1e-4),
    "data_on_device": ({"data_on_device": "always"}, 1e-4),
    "bf16": ({"bf16": True}, 5e-2),
    "bf16+channels_last+data_on_device": ({"bf16": True, "channels_last": True, "data_on_device": "always"}, 5e-2),
}


@pytest.mark.parametrize("model", ["factorqvae", "qlae"])
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_speed_setting_keeps_the_losses(model, setting):
    train, tol = SETTINGS[setting]
    ref = _losses_once(model)
    got = _losses_once(model, **train)
    assert all(np.isfinite(got))
    np.testing.assert_allclose(got, ref, rtol=tol)
    if setting == "data_on_device":  # the same bytes gathered another way: bit for bit
        assert got == ref


def test_bf16_changes_the_arithmetic():
    """The bf16 tolerance above is not vacuous: autocast is really on."""
    assert _losses_once("factorqvae", bf16=True) != _losses_once("factorqvae")


@pytest.mark.slow
@pytest.mark.parametrize("model", ["factorqvae", "qlae"])
def test_compile_keeps_the_losses_and_compiles_once(model):
    import torch._dynamo as dynamo

    ref = _losses_once(model)
    dynamo.reset()
    graphs: list[int] = []
    got = _losses(model, compile=True,
                  after_step=lambda it: graphs.append(dynamo.utils.counters["stats"]["unique_graphs"]))
    np.testing.assert_allclose(got, ref, rtol=1e-3)
    # A new temperature every step is data, not a new graph: nothing is compiled after the first step.
    assert graphs[0] > 0 and graphs == [graphs[0]] * ITERS
    got_all = _losses(model, compile=True, bf16=True, channels_last=True, data_on_device="always")
    np.testing.assert_allclose(got_all, ref, rtol=5e-2)


def test_adamw_decays_weights_only_and_clips_elementwise():
    from fqvae_cli.training.step import ADAMW_CLIP_VALUE, vae_optimizer

    cfg = resolve_run_config("qlae", "synth3d", "quick", 0,
                             {"train": {"optimizer": "adamw", "weight_decay": 0.1}})
    model = build_model(cfg.model)
    opt = vae_optimizer(model, cfg.train)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    kept = {names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert "bottleneck.codebook" in kept and not any(n.endswith(".bias") for n in decayed)
    assert "encoder.head.1.weight" in decayed and not any(n.startswith("tc.") for n in decayed | kept)
    # Elementwise clipping inside the real step: after a step on a loss scaled up 1e6, every gradient
    # the optimizer saw lies in [-1, 1] (unclipped, they reach far beyond).
    opts = Optimizers.for_model(model, cfg.train, total_correlation=False)
    assert opts.clip_value == ADAMW_CLIP_VALUE == 1.0
    step = TrainStep(model, opts, cfg.train, resolve_device("cpu"), half=8)
    x = torch.rand(8, 3, 32, 32) - 0.5
    model.training_step_losses = _scaled(model.training_step_losses, 1e6)
    step(x, 1e-3, 0.9)
    grads = torch.cat([p.grad.flatten() for p in model.vae_parameters() if p.grad is not None])
    assert grads.abs().max() == 1.0


def _scaled(losses, factor):
    def scaled(x, tau):
        total, parts, tc_input = losses(x, tau)
        return total * factor, parts, tc_input
    return scaled


def test_optimizer_steps_lr_follows_the_iteration(cli, small_data):
    """Under optimizer_steps a Factor model runs steps/2 iterations and the learning rate is read at the
    iteration (the authors' scheduler steps once per batch): it is half-way down its cosine at the
    middle of the anneal span in iterations, not at a quarter of it."""
    from fqvae_cli.registry.store import Registry
    from fqvae_cli.training.step import cosine_lr

    res = cli("train", "--model", "factorqvae", "--steps", "16", "--batch-size", "4", "--name", "opt",
              "--set", "train.step_convention=optimizer_steps", "--set", "train.anneal_steps=8",
              "--set", "train.schedule_reference_steps=null", "--set", "train.log_every=1",
              "--set", "train.threads=1", "--set", "eval.mse_images=16", "--set", "model.disc_width=16",
              "--device", "cpu")
    assert res.exit_code == 0, res.stderr
    reg = Registry()
    run = reg.get_run("opt")
    lrs = {m.step: m.value for m in reg.metrics(run.id, name="lr")}
    assert sorted(lrs) == list(range(1, 9))  # 8 iterations
    lr, lr_min = run.config["train"]["lr"], run.config["train"]["lr_min"]
    for done, value in lrs.items():  # logged after iteration done - 1
        assert value == pytest.approx(cosine_lr(done - 1, lr, lr_min, 8))
    assert lrs[5] == pytest.approx((lr + lr_min) / 2)
