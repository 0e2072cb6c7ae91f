"""`fqvae train`: one run of Algorithm 1 (or the plain step), recorded in the registry."""

from __future__ import annotations

import typer

from fqvae_cli.cli.options import DB_OPTION, DEVICE_OPTION


def register(app: typer.Typer) -> None:
    app.command(name="train")(train)


def train(
    model: str = typer.Option(None, "--model", "-m", help="Model name (see `fqvae models`) [default: factorqvae]."),
    dataset: str = typer.Option(None, "--dataset", "-d",
                                help="Dataset name; default the profile's (synth3d, built in)."),
    profile: str = typer.Option(None, "--profile", "-p", help="Profile in experiments.yaml: quick or paper "
                                "[default: quick]."),
    seed: int = typer.Option(None, "--seed", help="Seed of initialisation, data order and noise, 0 to "
                             "4294967295 [default: 0]."),
    steps: int = typer.Option(None, "--steps", help="Training iterations (overrides the profile)."),
    batch_size: int = typer.Option(None, "--batch-size", help="Batch size B (Factor models draw 2B)."),
    overrides: list[str] = typer.Option(None, "--set", help="Override a setting: key=value, e.g. "
                                        "--set model.beta=1e-3 --set train.lr=5e-4 (bare keys like beta work)."),
    device: str = DEVICE_OPTION,
    name: str = typer.Option(None, "--name", help="A name for the run (unique names are easy to refer to; not "
                             "another run's id or the start of one)."),
    resume: str = typer.Option(None, "--resume", help="Continue RUN from its newest checkpoint that verifies "
                               "(same data order and random streams), with the settings it was created with."),
    checkpoint: int = typer.Option(None, "--checkpoint", min=0, help="With --resume: continue from the "
                                   "checkpoint at this iteration (newer ones are set aside, not deleted)."),
    db: str = DB_OPTION,
) -> None:
    """Train one model and record it in the registry.

    Examples: `fqvae train --model factorqvae` (quick profile on the built-in dataset),
    `fqvae train --model qvae --dataset shapes3d --profile paper --device cuda`,
    `fqvae train --resume 3fa2c1d9`, `fqvae train --resume 3fa2c1d9 --checkpoint 2000`.
    """

    from fqvae_cli import console
    from fqvae_cli.device import resolve_device
    from fqvae_cli.errors import Interrupted, UsageError
    from fqvae_cli.experiments import parse_overrides, resolve_run_config
    from fqvae_cli.figures.traversal import snapshot_picture
    from fqvae_cli.inputs import check_seed, run_name
    from fqvae_cli.metrics import MSE_SCALE
    from fqvae_cli.registry.store import Registry
    from fqvae_cli.training.session import NewRun, Resume, RunStopped, run_session

    if checkpoint is not None and not resume:
        raise UsageError("--checkpoint chooses where --resume continues from; give --resume RUN too.")
    if resume:
        given = [flag for flag, value in (("--model", model), ("--dataset", dataset), ("--profile", profile),
                                          ("--seed", seed), ("--steps", steps), ("--batch-size", batch_size),
                                          ("--set", overrides), ("--name", name)) if value not in (None, [])]
        if given:
            raise UsageError(f"--resume continues a run with the settings it was created with; drop "
                             f"{', '.join(given)} (or start a new run without --resume).")
        start = Resume(resume, checkpoint)
    else:
        # Everything a user typed is checked before the registry, the data or a run is touched.
        seed = check_seed(0 if seed is None else seed)
        name = run_name(name)
        extra = parse_overrides(overrides or [])
        if steps is not None:
            extra.setdefault("train", {})["steps"] = steps
        if batch_size is not None:
            extra.setdefault("train", {})["batch_size"] = batch_size
        start = NewRun(resolve_run_config(model or "factorqvae", dataset, profile or "quick", seed, extra), name)
    reg = Registry(db)
    dev = resolve_device(device)
    try:
        with run_session(reg, start) as session:
            run, cfg = session.run, session.cfg
            if not resume:
                console.info(f"run [bold]{run.short_id}[/bold]: {cfg.model.name} on {cfg.dataset}, profile "
                             f"{cfg.profile}, {cfg.train.steps} steps at batch {cfg.train.batch_size}, seed {cfg.seed}")
            elif session.start is None:
                how = "stopped before its first checkpoint; it starts again" if session.restarted else "starts"
                console.info(f"run [bold]{run.short_id}[/bold] ({cfg.model.name} on {cfg.dataset}) {how} from "
                             "iteration 0 with its settings")
            else:
                console.info(f"resuming run [bold]{run.short_id}[/bold] ({cfg.model.name} on {cfg.dataset}) from "
                             f"iteration {session.start.step}")
            result = session.train(dev, draw=snapshot_picture)
    except RunStopped as stop:
        how = f"; continue it with `fqvae train --resume {run.short_id}`" if stop.resumable else ""
        raise Interrupted(f"interrupted; {stop.outcome}{how}.") from None
    console.info(f"finished run [bold]{run.short_id}[/bold]: {result.iterations} iterations, "
                 f"{result.images_per_s:.0f} images/s, test MSE x 1e4 = {result.test_mse * MSE_SCALE:.2f}")
    console.info(f"next: `fqvae evaluate {run.short_id}` (scores it with the {cfg.eval.protocol} protocol of its "
                 "settings)")
    typer.echo(run.short_id)
