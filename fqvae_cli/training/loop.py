"""The training loop: Algorithm 1 for Factor models, a plain step for the others.

Step convention: one *iteration* is one update of the autoencoder (and, for Factor models, one
update of the discriminator on a second half-batch). With `step_convention: optimizer_steps` a Factor
model's `steps` counts both updates, as the authors' Lightning setup did, so it runs steps/2
iterations. The schedules are evaluated at the counted step either way.

Everything that decides the random stream is a function of (seed, step) or saved in the checkpoint:
the batch order comes from the sampler's (seed, step) permutation and torch's RNG state (Gumbel noise,
Gaussian samples, permutations) is saved, so `--resume` continues the same run bit for bit on CPU."""

from __future__ import annotations

import math
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fqvae_cli.config import RunConfig, TrainConfig
from fqvae_cli.errors import CheckpointError, TrainingError
from fqvae_cli.training.schedules import cosine_lr, temperature


class Terminated(Exception):
    """SIGTERM (e.g. a scheduler pre-empting the job): handled like Ctrl-C."""


class _TakenOver(Exception):
    """The registry no longer lists this run as running here (requeued after a stale heartbeat)."""


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    iterations: int
    test_mse: float | None
    images_per_s: float


def iterations_for(train: TrainConfig, factor: bool) -> tuple[int, int]:
    """(number of iterations, counted steps per iteration) under the run's step convention."""
    per = 2 if (factor and train.step_convention == "optimizer_steps") else 1
    return max(1, train.steps // per), per


def _optimizer(params: list, train: TrainConfig) -> Any:
    import torch

    if train.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
    return torch.optim.Adam(params, lr=train.lr, weight_decay=train.weight_decay)


def _rng_state(device: Any) -> dict:
    import torch

    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: Any) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def latest_checkpoint(reg: Any, run_id: str) -> tuple[int, Any, Any] | None:
    """(step, weights artifact, state artifact) of the newest complete checkpoint, or None."""
    weights = {a.step: a for a in reg.artifacts(run_id, kind="checkpoint")}
    states = {a.step: a for a in reg.artifacts(run_id, kind="checkpoint_state")}
    steps = sorted(set(weights) & set(states))
    if not steps:
        return None
    s = steps[-1]
    return s, weights[s], states[s]


def _data_on_device(mode: str, device: Any, n_images: int, image_bytes: int) -> bool:
    if device.type != "cuda" or mode == "never":
        return False
    if mode == "always":
        return True
    import torch

    free, _total = torch.cuda.mem_get_info(device)
    return n_images * image_bytes < 0.5 * free


def train_run(cfg: RunConfig, reg: Any, run: Any, device: Any, *, resume: bool = False,
              show_progress: bool = True) -> TrainResult:
    """Train `run` (already in the registry) with `cfg` on `device`; records everything in `reg`."""
    import torch

    from fqvae_cli import console
    from fqvae_cli.data.sampler import BatchSampler
    from fqvae_cli.data.store import open_dataset
    from fqvae_cli.device import describe
    from fqvae_cli.io import atomic_write_json, sha256_file
    from fqvae_cli.metrics.codes import held_out_subset, reconstruction_mse
    from fqvae_cli.models.specs import get_model_spec
    from fqvae_cli.models.zoo import build_model
    from fqvae_cli.registry.store import run_dir
    from fqvae_cli.training.checkpoint import load_state, load_weights, save_checkpoint

    spec = get_model_spec(cfg.model.name)
    tc = cfg.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    folder = run_dir(run)
    ckpt_dir = folder / "checkpoints"
    config_dict = cfg.model_dump(mode="json")
    atomic_write_json(folder / "config.json", config_dict)

    ds = open_dataset(cfg.dataset)
    splits = ds.split(seed=1)
    n_iter, per_iter = iterations_for(tc, spec.factor)
    anneal_steps, decay = tc.effective_schedule()
    half = tc.batch_size
    images_per_iter = 2 * half if spec.factor else half

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model).to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt_vae = _optimizer(list(model.vae_parameters()), tc)
    d_params = list(model.discriminator_parameters())
    opt_d = torch.optim.Adam(d_params, lr=tc.lr) if spec.factor else None
    on_device = _data_on_device(tc.data_on_device, device, len(splits["train"]),
                                int(ds.images[0].nbytes))
    sampler = BatchSampler(ds, splits["train"], images_per_iter, seed=cfg.seed, device=device,
                           on_device=on_device)

    start = 0
    if resume:
        found = latest_checkpoint(reg, run.id)
        if found is None:
            raise CheckpointError(f"run {run.short_id} has no checkpoint to resume from.")
        step, w_art, s_art = found
        load_weights(Path(w_art.path), model, w_art.sha256, device=device)
        state = load_state(Path(s_art.path), s_art.sha256)
        opt_vae.load_state_dict(state["opt_vae"])
        if opt_d is not None:
            opt_d.load_state_dict(state["opt_d"])
        _set_rng_state(state["rng"], device)
        start = int(state["iteration"])

    def checkpoint(iteration: int) -> None:
        state = {"opt_vae": opt_vae.state_dict(), "rng": _rng_state(device), "iteration": iteration}
        if opt_d is not None:
            state["opt_d"] = opt_d.state_dict()
        files = save_checkpoint(ckpt_dir, iteration, model, state, config_dict)
        for kind, path in (("checkpoint_state", files.state), ("checkpoint", files.weights)):
            reg.add_artifact(run.id, kind=kind, path=str(path), bytes=path.stat().st_size,
                             sha256=sha256_file(path), step=iteration)
        _prune(reg, run.id, tc.keep_checkpoints)

    reg.start(run.id, host=socket.gethostname(), device=describe(device))
    amp = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=tc.bf16)
    check_every = 1 if device.type == "cpu" else tc.log_every  # a host sync per step is free on CPU only
    last_ckpt = start
    bad_step = torch.full((), -1, dtype=torch.long, device=device)
    old_term = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        raise Terminated()

    try:
        signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread
        old_term = None
    t0 = time.monotonic()
    done = start
    ctx = console.progress(f"train {cfg.model.name}", total=n_iter, unit="step") if show_progress else None
    bar = ctx.__enter__() if ctx else None
    if bar and start:
        bar.advance(start)
    model.train()
    try:
        for it in range(start, n_iter):
            counted = it * per_iter
            lr = cosine_lr(counted, tc.lr, tc.lr_min, anneal_steps)
            tau = temperature(counted, decay)
            for group in opt_vae.param_groups:
                group["lr"] = lr
            x = sampler.batch(it)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            x1 = x[:half]
            with amp:
                total, parts, tc_input = model.training_step_losses(x1, tau)
            opt_vae.zero_grad(set_to_none=True)
            total.backward()
            opt_vae.step()
            if opt_d is not None:
                for group in opt_d.param_groups:
                    group["lr"] = lr
                with amp:
                    d_loss = model.discriminator_loss(tc_input.detach(), x[half:], tau)
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                parts = {**parts, "disc": d_loss}
            bad_step = torch.where((bad_step < 0) & ~torch.isfinite(total.detach()),
                                   torch.full_like(bad_step, it + 1), bad_step)
            done = it + 1
            logging = done % tc.log_every == 0 or done == n_iter
            if done % check_every == 0 or logging or done % tc.checkpoint_every == 0:
                if int(bad_step) >= 0:
                    values = {k: float(v.detach()) for k, v in parts.items()}
                    raise TrainingError(
                        f"non-finite loss at iteration {int(bad_step)} ("
                        + ", ".join(f"{k}={v:.4g}" for k, v in values.items())
                        + f"); last good checkpoint: iteration {last_ckpt}.")
            if logging:
                values = {k: float(v.detach()) for k, v in parts.items()}
                rows = [(f"loss/{k}", v, done, "train", None) for k, v in values.items()]
                rows += [("lr", lr, done, "train", None), ("temperature", tau, done, "train", None)]
                reg.log_metrics(run.id, rows)
                if not reg.heartbeat(run.id):
                    raise _TakenOver()
                if bar:
                    bar.status(" ".join(f"{k} {v:.4g}" for k, v in list(values.items())[:5]))
            if done % tc.checkpoint_every == 0 or done == n_iter:
                checkpoint(done)
                last_ckpt = done
            if bar:
                bar.advance(1)
    except (KeyboardInterrupt, Terminated):
        if done > last_ckpt and int(bad_step) < 0:
            checkpoint(done)
        reg.interrupt(run.id)
        raise KeyboardInterrupt from None
    except _TakenOver:
        raise TrainingError(f"run {run.short_id} was requeued elsewhere after a stale heartbeat; "
                            "this process stops without touching it.") from None
    except TrainingError as exc:
        reg.fail(run.id, str(exc))
        raise
    except BaseException as exc:
        reg.fail(run.id, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if ctx:
            ctx.__exit__(None, None, None)
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    elapsed = time.monotonic() - t0
    ips = (done - start) * images_per_iter / elapsed if elapsed > 0 else 0.0

    test_idx = held_out_subset(ds, cfg.eval.mse_images, cfg.eval.seed)
    mse = reconstruction_mse(model, ds, test_idx, device, batch_size=cfg.eval.batch_size)
    reg.log_metrics(run.id, [("mse", mse, done, "test", "final"),
                             ("train_images_per_s", ips, done, "train", None)])
    if not math.isfinite(mse):
        reg.fail(run.id, f"test MSE is not finite after training ({mse}).")
        raise TrainingError(f"test MSE is not finite after training ({mse}).")
    reg.finish(run.id)
    return TrainResult(run.id, done, mse, ips)


def _prune(reg: Any, run_id: str, keep: int) -> None:
    """Keep the newest `keep` checkpoints (rows and files)."""
    arts = reg.artifacts(run_id, kind="checkpoint") + reg.artifacts(run_id, kind="checkpoint_state")
    steps = sorted({a.step for a in arts})
    for old in steps[:-keep] if len(steps) > keep else []:
        for a in arts:
            if a.step == old:
                Path(a.path).unlink(missing_ok=True)
                reg.remove_artifact(a.id)
