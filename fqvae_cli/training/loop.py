"""The training loop: set up, (resume,) iterate, score the test MSE, finish.

Step convention: one *iteration* is one update of the autoencoder (and, for Factor models, one update of
the discriminator on a second half-batch). With `step_convention: optimizer_steps` a Factor model's
`steps` counts both updates, as the authors' Lightning setup did, so it runs steps/2 iterations; the
learning rate follows the iteration (the authors' scheduler steps once per batch) and the Gumbel
temperature the counted step.

Everything that decides the random stream is a function of (seed, step) or saved in the checkpoint:
the batch order comes from the sampler's (seed, step) permutation and torch's RNG state (Gumbel noise,
Gaussian samples, permutations) is saved, so `--resume` continues the same run bit for bit on CPU."""

from __future__ import annotations

import math
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch  # the training package is only imported by commands that train

from fqvae_cli import console, provenance
from fqvae_cli.config import RunConfig, TrainConfig
from fqvae_cli.data.sampler import BatchSampler
from fqvae_cli.device import bounded_by_cores, device_label, native_bf16
from fqvae_cli.errors import TrainingError
from fqvae_cli.files import atomic_write_json
from fqvae_cli.metrics.codes import held_out_subset, reconstruction_mse
from fqvae_cli.models.zoo import build_model, get_model_spec
from fqvae_cli.registry.lifecycle import RUNNING
from fqvae_cli.registry.records import MetricRow
from fqvae_cli.registry.store import run_dir
from fqvae_cli.training.board import Board
from fqvae_cli.training.checkpoint import RecordedCheckpoint, load_state, load_weights, set_aside_after
from fqvae_cli.training.recorder import Recorder, side_job_failure
from fqvae_cli.training.snapshots import Draw, Snapshots
from fqvae_cli.training.step import Optimizers, TrainStep, cosine_lr, temperature

if TYPE_CHECKING:
    from fqvae_cli.registry.store import Registry


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    iterations: int
    test_mse: float | None
    images_per_s: float


def iterations_for(train: TrainConfig, total_correlation: bool) -> tuple[int, int]:
    """(number of iterations, counted steps per iteration) under the run's step convention."""
    per = 2 if (total_correlation and train.step_convention == "optimizer_steps") else 1
    return max(1, train.steps // per), per


def configure_backend(train: TrainConfig, device: Any) -> None:
    """Process-wide settings a run asks for: CPU threads (at most the cores it may use, as
    settle_settings records); on CUDA, cuDNN autotuning and TF32."""
    if train.threads:
        torch.set_num_threads(bounded_by_cores(train.threads, "train.threads"))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = train.cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = train.tf32
        torch.backends.cudnn.allow_tf32 = train.tf32


def settle_settings(cfg: RunConfig, reg: Registry, run: Any, device: Any) -> RunConfig:
    """The run's stored config says what runs. `train.bf16: auto` becomes true or false the first time a
    run starts (native bfloat16 on this device or not), so a resume elsewhere keeps the arithmetic; bf16
    asked for on a device that only emulates it trains, with a warning. `train.threads` above the cores
    this process may use becomes that number (with a warning)."""
    updates: dict[str, Any] = {}
    if cfg.train.bf16 == "auto":
        updates["bf16"] = native_bf16(device)
    elif cfg.train.bf16 and not native_bf16(device):
        console.warn(f"bf16 autocast is emulated on this {'GPU' if device.type == 'cuda' else 'CPU'} (no native "
                     "bfloat16): expect several times slower training than float32; --set train.bf16=auto "
                     "chooses float32 here.")
    if cfg.train.threads and (used := bounded_by_cores(cfg.train.threads, "train.threads")) != cfg.train.threads:
        updates["threads"] = used
    if updates:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update=updates)})
        reg.update_config(run.id, cfg.model_dump(mode="json"))
    return cfg


def data_on_device(mode: str, device: Any, n_images: int, image_bytes: int) -> bool:
    """Hold the train split on the device? `always` does on any device; `auto` only on CUDA with room
    (on CPU the prepared memmap already sits in the page cache)."""
    if mode != "auto":
        return mode == "always"
    if device.type != "cuda":
        return False
    free, _total = torch.cuda.mem_get_info(device)
    return n_images * image_bytes < 0.5 * free


def rng_state(device: Any) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def load_resume_state(reg: Registry, run: Any, model: Any, opts: Optimizers, device: Any,
                      ckpt: RecordedCheckpoint) -> int:
    """Load checkpoint `ckpt` into model and optimizers and reset the RNG; set aside any newer checkpoint
    (the run continues from `ckpt` and rewrites them). Returns its iteration."""
    load_weights(Path(ckpt.weights.path), model, ckpt.weights.sha256, device=device)
    state = load_state(Path(ckpt.state.path), ckpt.state.sha256)
    newer = set_aside_after(reg, run.id, ckpt.step)
    if newer:
        console.warn(f"run {run.short_id} continues from iteration {ckpt.step}; the checkpoint files of iteration(s) "
                     f"{', '.join(map(str, newer))} are kept beside it as *.set-aside.")
    opts.load_state_dict(state)
    torch.set_rng_state(state["rng"]["torch"])
    if device.type == "cuda" and "cuda" in state["rng"]:
        torch.cuda.set_rng_state(state["rng"]["cuda"], device)
    return int(state["iteration"])


class FiniteWatch:
    """Remembers the first iteration whose total loss was not finite, without a host sync per step on a
    GPU (a sync is free on CPU, so there every step is checked at once)."""

    def __init__(self, device: Any):
        self.bad = torch.full((), -1, dtype=torch.long, device=device)
        self.every_step = device.type == "cpu"

    def update(self, total: torch.Tensor, iteration: int) -> None:
        self.bad = torch.where((self.bad < 0) & ~torch.isfinite(total.detach()),
                               torch.full_like(self.bad, iteration), self.bad)

    def healthy(self) -> bool:
        return int(self.bad) < 0

    def check(self, parts: dict, last_good: int) -> None:
        if not self.healthy():
            values = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in parts.items())
            raise TrainingError(f"non-finite loss at iteration {int(self.bad)} ({values}); "
                                f"last good checkpoint: iteration {last_good}.")


def open_board(folder: Path, start: int, short_id: str) -> Board | None:
    """The run's TensorBoard writer, or None with one warning when it cannot be opened (a side job)."""
    try:
        return Board(folder, start)
    except Exception as exc:  # noqa: BLE001 - a side job never costs the run
        console.warn(f"run {short_id}: TensorBoard events stopped at iteration {start} "
                     f"({side_job_failure(exc)}); training goes on without TensorBoard events.")
        return None


def train_run(cfg: RunConfig, reg: Registry, run: Any, ds: Any, device: Any, *,
              resume_from: RecordedCheckpoint | None = None, draw: Draw | None = None,
              show_progress: bool = True, test_mse: bool = True) -> TrainResult:
    """Train `run` (already in the registry and held by this process) with `cfg` on dataset `ds` and
    `device`, from scratch or from checkpoint `resume_from` (see checkpoint.usable_checkpoint); records
    everything in `reg`. `draw` makes the snapshots (snapshots.Draw; none without it). test_mse=False
    leaves the test MSE to the evaluation that follows (a worker's run). The run's status at the end is
    the session's to set (session.py); a test MSE that is not finite raises TrainingError."""
    spec = get_model_spec(cfg.model.name)
    cfg = settle_settings(cfg, reg, run, device)
    train = cfg.train
    configure_backend(train, device)
    folder = run_dir(run)
    config = cfg.model_dump(mode="json")
    atomic_write_json(folder / "config.json", config)

    split = ds.split()
    n_iter, per_iter = iterations_for(train, spec.total_correlation)
    anneal_steps, decay = train.effective_schedule()
    images_per_iter = 2 * train.batch_size if spec.total_correlation else train.batch_size

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model).to(device)
    if train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opts = Optimizers.for_model(model, train, spec.total_correlation)
    on_device = data_on_device(train.data_on_device, device, len(split["train"]), int(ds.images[0].nbytes))
    sampler = BatchSampler(ds, split["train"], images_per_iter, seed=cfg.seed, device=device,
                           on_device=on_device, channels_last=train.channels_last)
    start = load_resume_state(reg, run, model, opts, device, resume_from) if resume_from is not None else 0
    step = TrainStep(model, opts, train, device, half=train.batch_size)
    watch = FiniteWatch(device)
    snapshot_every = train.snapshot_interval(n_iter)
    board = open_board(folder / "tensorboard", start, run.short_id) if train.tensorboard else None
    # What trains it (machine, kernels, the threads set above, versions): recorded with this start and
    # with every metric row the run writes.
    origin = provenance.collect(device)
    recorder = Recorder(reg, run, folder, config, keep=train.keep_checkpoints, board=board,
                        views=Snapshots(model, ds, device, seed=cfg.eval.seed, draw=draw), provenance=origin)

    def state() -> dict:
        return {**opts.state_dict(), "rng": rng_state(device)}

    reg.transition(run.id, RUNNING, host=socket.gethostname(), device=device_label(device), provenance=origin,
                   step=start)
    model.train()
    t0 = time.monotonic()
    with recorder.recording(f"train {cfg.model.name}", n_iter, start, model, state, watch.healthy,
                            show_progress):
        for it in range(start, n_iter):
            lr = cosine_lr(it, train.lr, train.lr_min, anneal_steps)
            tau = temperature(it * per_iter, decay)
            parts = step(sampler.batch(it), lr, tau)
            done = it + 1
            recorder.advance(done)
            watch.update(parts["total"], done)
            logging = done % train.log_every == 0 or done == n_iter
            saving = done % train.checkpoint_every == 0 or done == n_iter
            picturing = snapshot_every > 0 and (done % snapshot_every == 0 or done == n_iter)
            if watch.every_step or logging or saving:
                watch.check(parts, recorder.last_checkpoint)
            if logging:
                recorder.log(done, {k: float(v.detach()) for k, v in parts.items()}, lr, tau)
            if picturing:
                recorder.snapshot(done)
            if saving:
                recorder.checkpoint(done, model, state())
            recorder.stop_if_asked()
    elapsed = time.monotonic() - t0
    ips = (recorder.done - start) * images_per_iter / elapsed if elapsed > 0 else 0.0
    reg.log_metrics(run.id, [MetricRow("train_images_per_s", ips, recorder.done, "train")], provenance=origin)
    mse = _test_mse(cfg, reg, run, model, ds, device, recorder.done, origin) if test_mse else None
    recorder.wrap_up({"train_images_per_s": ips} | ({} if mse is None else {"mse": mse}))
    return TrainResult(run.id, recorder.done, mse, ips)


def _test_mse(cfg: RunConfig, reg: Registry, run: Any, model: Any, ds: Any, device: Any, done: int,
              origin: dict) -> float:
    """Test MSE on the held-out subset, recorded; one that is not finite fails the run."""
    test_idx = held_out_subset(ds, cfg.eval.mse_images, cfg.eval.seed)
    mse = reconstruction_mse(model, ds, test_idx, device, batch_size=cfg.eval.batch_size)
    reg.log_metrics(run.id, [MetricRow("mse", mse, done, "test", "final")], provenance=origin)
    if not math.isfinite(mse):
        raise TrainingError(f"test MSE is not finite after training ({mse}).")
    return mse
