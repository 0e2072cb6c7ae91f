"""`fqvae sweep`, `fqvae reproduce` and `fqvae worker`: queue runs in the registry (a grid, or what a table
lacks) and execute them anywhere."""

from __future__ import annotations

import typer

from fqvae_cli.cli.options import DB_OPTION, DEVICE_OPTION, PAPER_TABLE_OPT


def register(app: typer.Typer) -> None:
    app.command(name="sweep")(sweep)
    app.command(name="reproduce")(reproduce)
    app.command(name="worker")(worker)


def sweep(
    table: str = typer.Option(None, "--table", "--paper-table", "-t", help="Queue the runs of a table: 1, 2, field or "
                              "study_v1."),
    grid: str = typer.Option(None, "--grid", help="Queue a grid, e.g. 'model=qvae,factorqvae seed=0..4 "
                             "set.beta=1e-4,1e-3' (keys: model, dataset, profile, seed, set.KEY)."),
    profile: str = typer.Option("quick", "--profile", "-p", help="Profile of the queued runs."),
    seeds: int = typer.Option(1, "--seeds", min=1, help="With --table: seeds per cell."),
    yes: bool = typer.Option(False, "--yes", help="Queue a grid of more than 1,000 runs. No sweep queues more "
                             "than 100,000 runs, even with --yes (the grid is counted before it is expanded)."),
    executor: str = typer.Option(None, "--executor", help="Also start workers: local or slurm (default: only queue)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Number of workers to start."),
    device: str = typer.Option("auto", "--device", help="Device for the workers."),
    partition: str = typer.Option(None, "--partition", help="Slurm partition."),
    gpus: int = typer.Option(0, "--gpus", help="Slurm: GPUs per worker job."),
    time_min: int = typer.Option(600, "--time", help="Slurm: time limit per worker job in minutes."),
    db: str = DB_OPTION,
) -> None:
    """Queue runs (a paper table or a grid) and optionally start workers to execute them."""
    from fqvae_cli import console
    from fqvae_cli.errors import UsageError
    from fqvae_cli.paths import registry_url, workspace
    from fqvae_cli.registry.store import Registry
    from fqvae_cli.runs.sweep import queue_grid, queue_table
    from fqvae_cli.runs.workers import start_local_workers, submit_slurm_workers, wait_all

    if (table is None) == (grid is None):
        raise UsageError("give exactly one of --table or --grid.")
    if executor not in (None, "local", "slurm"):
        raise UsageError(f"unknown executor '{executor}'; choose local or slurm.")
    url = registry_url(db)
    reg = Registry(url)
    if table is not None:
        report = queue_table(reg, table, profile, seeds=seeds)
        queued = report.queued
    else:
        queued = queue_grid(reg, grid, profile=profile, confirmed=yes)
    console.info(f"{len(queued)} run(s) queued")
    typer.echo("\n".join(queued))
    if executor == "local":
        # The workers started here execute this sweep's runs only; others stay queued for theirs.
        codes = wait_all(start_local_workers(workers, db_url=url, device=device, only=queued))
        if any(codes):
            raise UsageError(f"a worker failed (exit codes {codes}).")
    elif executor == "slurm":
        jobs = submit_slurm_workers(workers, db_url=url, folder=str(workspace() / "slurm"), device=device,
                                    partition=partition, gpus=gpus, time_min=time_min, only=queued)
        console.info(f"submitted worker job(s): {', '.join(str(j.job_id) for j in jobs)}")
    else:
        console.info("start workers with `fqvae worker` (any machine that reaches the registry).")


def worker(
    once: bool = typer.Option(False, "--once", help="Execute one run, then exit."),
    max_runs: int = typer.Option(None, "--max-runs", min=1, help="Exit after this many runs."),
    device: str = DEVICE_OPTION,
    threads: int = typer.Option(None, "--threads", min=1, help="torch CPU threads for this worker; at most the "
                                "cores it may use (a larger value is lowered to that, with a warning)."),
    runs: str = typer.Option(None, "--runs", help="Claim only these queued runs (ids, short ids or names, "
                             "comma-separated; `-` reads them from standard input, one per line, e.g. piped "
                             "from `fqvae sweep`); others stay queued. Default: any queued run."),
    stale_after: float = typer.Option(300.0, "--stale-after", min=0.0,
                                      help="Requeue running runs whose heartbeat is older than this many seconds "
                                           "(their worker died); a run whose process is alive on this machine "
                                           "is never taken over."),
    jobs: int = typer.Option(None, "--jobs", min=1,
                             help="Processes for the DCI fits during evaluation. Default: on CUDA the cores "
                                  "this worker holds (--threads, else all it may run on), so the fits do not "
                                  "keep the GPU waiting; on the CPU 1, the other cores training sibling "
                                  "workers' runs."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars (one line per run)."),
    db: str = DB_OPTION,
) -> None:
    """Claim queued runs from the registry, train and evaluate them, until the queue is empty."""
    import re
    import sys

    from fqvae_cli import console
    from fqvae_cli.device import bounded_by_cores, resolve_device
    from fqvae_cli.errors import Interrupted
    from fqvae_cli.registry.store import Registry
    from fqvae_cli.runs.workers import WorkerStopped, dci_jobs, die_with_parent, run_worker

    die_with_parent()
    if threads:
        import torch

        threads = bounded_by_cores(threads, "--threads")
        torch.set_num_threads(threads)
    only = None
    if runs is not None:
        refs = sys.stdin.read().split() if runs.strip() == "-" else [r for r in runs.split(",") if r.strip()]
        only = [r.strip() for r in refs]
    reg = Registry(db)
    if only is not None:
        # Ids and short ids are taken as they are (a worker may be handed thousands); names and prefixes
        # are looked up, so a typo is refused here rather than silently claiming nothing.
        only = [r if re.fullmatch(r"[0-9a-f]{8}|[0-9a-f]{32}", r) else reg.get_run(r).short_id for r in only]
    dev = resolve_device(device)
    try:
        n = run_worker(reg, dev, once=once, max_runs=max_runs, stale_after_s=stale_after,
                       jobs=jobs or dci_jobs(dev, threads), show_progress=not quiet,
                       on_run=lambda r: console.info(f"worker: run {r.short_id} done") if quiet else None,
                       only=only)
    except WorkerStopped as stop:
        raise Interrupted(f"worker stopped; {stop.outcome}.") from None
    except KeyboardInterrupt:
        raise Interrupted("worker stopped while it held no run.") from None
    console.info(f"worker: {n} run(s) executed; queue empty" if not (once or max_runs) else f"worker: {n} run(s)")


def reproduce(
    paper_table: str = PAPER_TABLE_OPT,
    profile: str = typer.Option("quick", "--profile", "-p", help="quick (CPU, built-in synth3d) or paper (GPU)."),
    datasets: list[str] = typer.Option(None, "--datasets", help="Columns to fill; default the profile's."),
    models: list[str] = typer.Option(None, "--models", help="Only these models (comma-separated)."),
    rows: list[str] = typer.Option(None, "--rows", help="Only these table rows (keys, e.g. qvae-32x1)."),
    seeds: int = typer.Option(1, "--seeds", min=1, help="Seeds per cell (0..N-1)."),
    workers: int = typer.Option(None, "--workers", min=1,
                                help="Parallel workers (local: processes here). Default: 2 on a CPU with 2+ cores "
                                     "(one thread each beats two threads on one run), else 1."),
    executor: str = typer.Option("local", "--executor", help="local or slurm."),
    overrides: list[str] = typer.Option(None, "--set", help="Override a setting for every run, key=value."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Start failed cells again from scratch."),
    device: str = DEVICE_OPTION,
    partition: str = typer.Option(None, "--partition", help="Slurm partition."),
    gpus: int = typer.Option(0, "--gpus", help="Slurm: GPUs per worker job."),
    time_min: int = typer.Option(600, "--time", help="Slurm: time limit per worker job in minutes."),
    db: str = DB_OPTION,
) -> None:
    """Queue the runs of a paper table, train and evaluate them, then print the table.

    Safe to interrupt and run again: finished runs are kept and interrupted ones resume from their
    last checkpoint. `fqvae reproduce --paper-table 1 --profile quick` is the CPU-sized reproduction.
    Stopping it (Ctrl-C, SIGTERM) stops its workers: each checkpoints and marks its run interrupted.
    """
    from fqvae_cli import console
    from fqvae_cli.cli.options import Cells, split
    from fqvae_cli.cli.table import print_table
    from fqvae_cli.device import resolve_device
    from fqvae_cli.errors import Interrupted
    from fqvae_cli.experiments import parse_overrides
    from fqvae_cli.paths import registry_url
    from fqvae_cli.registry.store import Registry
    from fqvae_cli.runs.sweep import ReproduceRequest, default_workers, reproduce_table

    url = registry_url(db)
    reg = Registry(url)
    dev = resolve_device(device)
    if workers is None:
        workers = default_workers(dev)
    extra = parse_overrides(overrides or [])
    req = ReproduceRequest(paper_table, profile, split(datasets), split(rows), split(models), seeds, extra,
                           retry_failed, workers, executor, {"partition": partition, "gpus": gpus,
                                                             "time_min": time_min})

    def say(report) -> None:
        console.info(f"table {paper_table}, profile {profile}: {len(report.done)} cell run(s) done, "
                     f"{len(report.queued)} to train, {len(report.to_evaluate)} to evaluate, "
                     f"{len(report.busy)} running elsewhere, {len(report.failed)} failed (kept; see --retry-failed)")

    try:
        report = reproduce_table(reg, url, dev, req, on_report=say)
    except KeyboardInterrupt:
        raise Interrupted("interrupted; its workers were stopped, finished runs are kept and interrupted ones "
                          "resume when you run the same command again.") from None
    chosen = Cells(paper_table, profile, split(datasets), split(rows), extra, report.protocol)
    print_table(reg, chosen, "rich", None)
