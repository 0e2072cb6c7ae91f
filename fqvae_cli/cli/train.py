"""`fqvae train`: one run of Algorithm 1 (or the plain step), recorded in the registry."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command(name="train")(train)


def train(
    model: str = typer.Option("factorqvae", "--model", "-m", help="Model name (see `fqvae models`)."),
    dataset: str = typer.Option(None, "--dataset", "-d",
                                help="Dataset name; default the profile's (synth3d, built in)."),
    profile: str = typer.Option("quick", "--profile", "-p", help="Profile in experiments.yaml: quick or paper."),
    seed: int = typer.Option(0, "--seed", help="Seed of initialisation, data order and noise."),
    steps: int = typer.Option(None, "--steps", help="Training iterations (overrides the profile)."),
    batch_size: int = typer.Option(None, "--batch-size", help="Batch size B (Factor models draw 2B)."),
    overrides: list[str] = typer.Option(None, "--set", help="Override a setting: key=value, e.g. "
                                        "--set model.beta=1e-3 --set train.lr=5e-4 (bare keys like beta work)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    name: str = typer.Option(None, "--name", help="A name for the run (unique names are easy to refer to)."),
    resume: str = typer.Option(None, "--resume", help="Continue RUN from its last checkpoint (same data order "
                               "and random streams); other options are taken from the run."),
    db: str = typer.Option(None, "--db", help="Registry URL (default $FQVAE_DB or the workspace's SQLite file)."),
) -> None:
    """Train one model and record it in the registry.

    Examples: `fqvae train --model factorqvae` (quick profile on the built-in dataset),
    `fqvae train --model qvae --dataset shapes3d --profile paper --device cuda`,
    `fqvae train --resume 3fa2c1d9`.
    """
    from fqvae_cli import console
    from fqvae_cli.config import build_run_config, parse_overrides, resolve_run_config
    from fqvae_cli.device import resolve_device
    from fqvae_cli.errors import Interrupted, UsageError
    from fqvae_cli.registry.store import Registry
    from fqvae_cli.training.loop import train_run

    reg = Registry(db)
    dev = resolve_device(device)
    if resume:
        run = reg.get_run(resume)
        if run.status == "finished":
            raise UsageError(f"run {run.short_id} already finished; nothing to resume.")
        cfg = build_run_config(run.config)
        console.info(f"resuming run [bold]{run.short_id}[/bold] ({cfg.model.name} on {cfg.dataset})")
    else:
        extra = parse_overrides(overrides or [])
        if steps is not None:
            extra.setdefault("train", {})["steps"] = steps
        if batch_size is not None:
            extra.setdefault("train", {})["batch_size"] = batch_size
        cfg = resolve_run_config(model, dataset, profile, seed, extra)
        run = reg.create_run(model=cfg.model.name, dataset=cfg.dataset, profile=cfg.profile, seed=cfg.seed,
                             config=cfg.model_dump(mode="json"), name=name)
        console.info(f"run [bold]{run.short_id}[/bold]: {cfg.model.name} on {cfg.dataset}, profile {cfg.profile}, "
                     f"{cfg.train.steps} steps at batch {cfg.train.batch_size}, seed {cfg.seed}")
    try:
        result = train_run(cfg, reg, run, dev, resume=bool(resume))
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; the run {run.short_id} was checkpointed and marked interrupted; "
                          f"continue it with `fqvae train --resume {run.short_id}`.") from None
    console.info(f"finished run [bold]{run.short_id}[/bold]: {result.iterations} iterations, "
                 f"{result.images_per_s:.0f} images/s, test MSE x 1e4 = {result.test_mse * 1e4:.2f}")
    console.info(f"next: `fqvae evaluate {run.short_id}`")
    typer.echo(run.short_id)
