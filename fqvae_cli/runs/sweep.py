"""Sweeps: expand a paper table or a grid into queued runs in the registry, and `reproduce`, which
queues a paper table and executes it with workers (fqvae_cli.runs.workers), here or on Slurm."""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fqvae_cli import console
from fqvae_cli.config import run_protocol
from fqvae_cli.device import available_cores
from fqvae_cli.errors import UsageError
from fqvae_cli.experiments import (
    deep_merge,
    load_experiments,
    parse_overrides,
    parse_value,
    resolve_run_config,
    table_of,
)
from fqvae_cli.inputs import check_seed
from fqvae_cli.models.zoo import get_model_spec
from fqvae_cli.paths import workspace
from fqvae_cli.registry.lifecycle import (
    BUSY,
    DONE,
    EVALUATE,
    FINISHED,
    NEXT_ACTIONS,
    QUEUED,
    RESUME,
    RETRY,
    RUNNING,
    WAITING,
    next_action,
)
from fqvae_cli.registry.transitions import ALIVE
from fqvae_cli.runs.cell_sources import cell_runs, dataset_identity, training_setup
from fqvae_cli.runs.evaluation import evaluate_run
from fqvae_cli.runs.tables import default_datasets, table_rows
from fqvae_cli.runs.workers import run_worker, start_local_workers, submit_slurm_workers, wait_all
from fqvae_cli.training.session import check_startable

if TYPE_CHECKING:
    from fqvae_cli.registry.store import Registry

# A grid larger than GRID_CAP runs is refused unless confirmed (--yes): it is almost always a typo.
# Nothing queues more than GRID_CEILING runs at once, confirmed or not: each is a registry row, and a
# product of a few long axes reaches billions before anyone notices.
GRID_CAP = 1_000
GRID_CEILING = 100_000
# Runs written per registry transaction when a grid is queued.
QUEUE_BATCH = 500


def check_queue_size(count: int, what: str, *, confirmed: bool = False) -> None:
    """Refuse to queue `count` runs above GRID_CEILING, and above GRID_CAP unless `confirmed`."""
    if count > GRID_CEILING:
        raise UsageError(f"{what} has {count:,} combinations, more than the ceiling of {GRID_CEILING:,} runs that "
                         "one sweep may queue, even with --yes; split it into smaller sweeps.")
    if count > GRID_CAP and not confirmed:
        raise UsageError(f"{what} has {count:,} combinations, more than {GRID_CAP:,}; narrow it, or pass --yes "
                         f"to queue them all (at most {GRID_CEILING:,}).")


@dataclass
class QueueReport:
    queued: list[str]  # short ids newly queued or requeued
    to_evaluate: list[str]  # finished runs that lack metrics
    done: list[str]  # finished and evaluated
    busy: list[str]  # running elsewhere (fresh heartbeat)
    failed: list[str]  # failed runs left alone (see retry_failed)
    protocol: str = "paper"  # the metric protocol the queued runs are evaluated with


def queue_table(reg: Registry, number: str, profile: str, *, datasets: list[str] | None = None,
                rows: list[str] | None = None, models: list[str] | None = None, seeds: int = 1,
                overrides: dict | None = None, retry_failed: bool = False) -> QueueReport:
    """Make sure every (dataset, row, seed) cell of a paper table has a run; queue what is missing.
    Idempotent: finished runs are kept, interrupted ones (and running ones whose process is gone) are
    requeued to resume, nothing is redone. A cell takes only runs of its exact training setup (tables.py)."""
    chosen = table_rows(table_of(load_experiments(), number), number, rows, models)
    datasets = datasets or default_datasets(number, profile)
    check_queue_size(len(datasets) * len(chosen) * seeds, f"table {number} with {seeds} seed(s)", confirmed=True)
    report = QueueReport([], [], [], [], [])
    checked: set[tuple[str, ...]] = set()  # tracker sets found ready (check_startable)
    for ds in datasets:
        # One query per dataset; table rows have distinct setups, so no cell sees another's new run.
        runs = reg.find_runs(dataset=ds, profile=profile)
        identity = dataset_identity(ds)
        # Factor models first: they cost twice a plain model's step, and workers take runs in the order
        # they were queued, so the long runs start early and the short ones fill in at the end.
        for row in sorted(chosen, key=lambda r: not get_model_spec(r["model"]).total_correlation):
            extra = deep_merge(overrides or {}, {"model": dict(row.get("set", {}))})
            for seed in range(seeds):
                cfg = resolve_run_config(row["model"], ds, profile, seed, extra)
                check_startable(cfg, checked)
                want = training_setup(cfg)
                existing = [r for r in cell_runs(runs, row["model"], want, identity) if r.seed == seed]
                report.protocol = cfg.eval.protocol
                _place(reg, cfg, existing, report, retry_failed, cfg.eval.protocol)
    return report


def _place(reg: Registry, cfg: Any, existing: list[Any], report: QueueReport, retry_failed: bool,
           protocol: str) -> None:
    """Give a cell what its runs need (lifecycle.next_action; the most advanced run of the cell decides): a
    stopped run, or a running one whose holder is gone, is requeued to resume; a failed one is reported,
    or replaced by a new run with retry_failed; a cell without runs gets one."""
    found: dict[str, Any] = {}
    for r in existing:
        action = next_action(r.status, holder_alive=r.status != RUNNING or reg.holder_state(r) == ALIVE,
                             evaluated=r.status == FINISHED and bool(reg.latest_metrics(r.id, protocol)))
        found.setdefault(action, r)
    action = next((s for s in NEXT_ACTIONS if s in found), None)
    run = found.get(action)
    lists = {DONE: report.done, EVALUATE: report.to_evaluate, WAITING: report.queued, BUSY: report.busy,
             RETRY: report.failed}
    if action == RESUME:
        reg.transition(run.id, QUEUED)
        report.queued.append(run.short_id)
    elif action in lists and not (action == RETRY and retry_failed):
        lists[action].append(run.short_id)
    else:
        report.queued.append(reg.create_run(**_queued_run(cfg)).short_id)


# ------------------------------------------------------------------ grids


def _axis(key: str, raw: str) -> Sequence:
    if key == "seed" and ".." in raw:
        lo, _, hi = raw.partition("..")
        try:
            first, last = int(lo), int(hi)
        except ValueError:
            raise UsageError(f"seed range must be integers like 0..4, got '{raw}'.") from None
        # Checked before the range is made: its length must fit in a machine integer.
        return range(check_seed(first, "a grid seed"), check_seed(last, "a grid seed") + 1)
    # Repeated values (seed=0,0,0) would queue identical runs: keep the first of each.
    values = list(dict.fromkeys(parse_value(v) for v in raw.split(",") if v != ""))
    if key == "seed":
        for v in values:
            if isinstance(v, int):
                check_seed(v, "a grid seed")
    return values


def grid_axes(text: str) -> list[tuple[str, Sequence]]:
    """The axes of a grid text, checked, without expanding their product."""
    axes: list[tuple[str, Sequence]] = []
    for token in text.split():
        if "=" not in token:
            raise UsageError(f"grid entries look like key=v1,v2 or seed=0..4; got '{token}'.")
        key, _, raw = token.partition("=")
        if key not in ("model", "dataset", "profile", "seed") and not key.startswith("set."):
            raise UsageError(f"unknown grid key '{key}'; use model, dataset, profile, seed or set.KEY.")
        if any(k == key for k, _ in axes):
            raise UsageError(f"grid key '{key}' is given twice; list its values once, comma-separated.")
        values = _axis(key, raw)
        if not len(values):
            raise UsageError(f"grid key '{key}' has no values.")
        axes.append((key, values))
    if not any(k == "model" for k, _ in axes):
        raise UsageError("a grid needs model=...")
    return axes


def grid_points(axes: list[tuple[str, Sequence]]) -> Iterator[dict]:
    """The grid's combinations one at a time (itertools.product: never all in memory), each a dict with
    keys model, dataset, profile, seed and 'set' (dotted override -> value)."""
    for values in itertools.product(*[v for _, v in axes]):
        point: dict = {"set": {}}
        for (key, _), v in zip(axes, values, strict=True):
            if key.startswith("set."):
                point["set"][key[4:]] = v
            else:
                point[key] = v
        yield point


def parse_grid(text: str, *, confirmed: bool = False) -> list[dict]:
    """'model=qvae,factorqvae seed=0..4 set.beta=1e-4,1e-3 dataset=synth3d profile=quick' -> one dict per
    combination (grid_points). The size is counted first and checked (check_queue_size)."""
    axes = grid_axes(text)
    check_queue_size(math.prod(len(v) for _, v in axes), "the grid", confirmed=confirmed)
    return list(grid_points(axes))


def queue_grid(reg: Registry, text: str, *, profile: str = "quick", confirmed: bool = False) -> list[str]:
    """Queue one run per distinct configuration of the grid; returns their short ids. The size is
    checked before anything is expanded; every configuration is resolved (and so validated, with what
    `train` would refuse: session.check_startable) before the first run is queued; then runs are written
    QUEUE_BATCH at a time. The combinations are generated twice rather than held: memory stays that of the
    distinct keys."""
    axes = grid_axes(text)
    check_queue_size(math.prod(len(v) for _, v in axes), "the grid", confirmed=confirmed)

    def configs() -> Iterator[tuple[bytes, Any]]:
        for p in grid_points(axes):
            overrides = parse_overrides([f"{k}={v}" for k, v in p["set"].items()])
            cfg = resolve_run_config(str(p["model"]), p.get("dataset"), str(p.get("profile", profile)),
                                     p.get("seed", 0), overrides)
            yield hashlib.sha256(cfg.model_dump_json().encode()).digest(), cfg

    checked: set[tuple[str, ...]] = set()
    for _, cfg in configs():
        check_startable(cfg, checked)
    seen: set[bytes] = set()
    queued: list[str] = []
    batch: list[dict] = []
    for key, cfg in configs():
        if key in seen:
            continue
        seen.add(key)
        batch.append(_queued_run(cfg))
        if len(batch) == QUEUE_BATCH:
            queued += [r.short_id for r in reg.create_runs(batch)]
            batch = []
    if batch:
        queued += [r.short_id for r in reg.create_runs(batch)]
    return queued


def _queued_run(cfg: Any) -> dict:
    """create_run's arguments for a queued run of `cfg`."""
    return {"model": cfg.model.name, "dataset": cfg.dataset, "profile": cfg.profile, "seed": cfg.seed,
            "config": cfg.model_dump(mode="json"), "status": QUEUED}


# ------------------------------------------------------------------ evaluate


def runs_to_evaluate(reg: Registry, *, ref: str | None = None, keys: Sequence[str] = (), protocol: str | None = None,
                     checkpoint: int | None = None, model: str | None = None, dataset: str | None = None,
                     missing: bool = True) -> list[tuple[str, str]]:
    """(short id, protocol) of the runs `fqvae evaluate` scores, each with `protocol` or its own: run `ref`;
    or, with no ref, every finished run (of `model`, `dataset`) that lacks one of `keys` under it (every
    one with missing=False). A run that has not finished training (queued, running, interrupted or failed)
    but has checkpoints is refused unless `checkpoint` names one: its last checkpoint is not its end."""
    if ref is None:
        todo = []
        for r in reg.find_runs(status=FINISHED, model=model, dataset=dataset):
            wanted = protocol or run_protocol(r.config)
            if missing and all(k in reg.latest_metrics(r.id, wanted) for k in keys):
                continue
            todo.append((r.short_id, wanted))
        return todo
    rec = reg.get_run(ref)
    if rec.status != FINISHED and checkpoint is None and reg.artifacts(rec.id, kind="checkpoint"):
        raise UsageError(f"run {rec.short_id} has not finished training (status {rec.status}); evaluate it when it "
                         "has, or pass --checkpoint STEP to score a mid-run checkpoint on purpose.")
    return [(rec.short_id, protocol or run_protocol(rec.config))]


# ------------------------------------------------------------------ reproduce


def default_workers(device: Any) -> int:
    """Workers for `reproduce` when none is asked for: 2 on a CPU when this process may use 2 or more
    cores (one thread each beats two threads on one run), else 1 (a GPU is shared by one worker)."""
    return 2 if device.type == "cpu" and available_cores() >= 2 else 1



@dataclass
class ReproduceRequest:
    number: str = "1"
    profile: str = "quick"
    datasets: list[str] | None = None
    rows: list[str] | None = None
    models: list[str] | None = None
    seeds: int = 1
    overrides: dict = field(default_factory=dict)
    retry_failed: bool = False
    workers: int = 1
    executor: str = "local"
    slurm: dict = field(default_factory=dict)  # partition, gpus, time_min


def reproduce_table(reg: Registry, url: str, device: Any, req: ReproduceRequest, *,
              on_report: Callable[[QueueReport], None] | None = None) -> QueueReport:
    """Queue a paper table's runs, evaluate finished ones that lack numbers, and execute them with
    `req.workers` local processes (or Slurm jobs). The workers claim only this table's runs: another
    sweep's queued runs stay queued. Safe to stop and start again."""
    if req.executor not in ("local", "slurm"):
        raise UsageError(f"unknown executor '{req.executor}'; choose local or slurm.")
    report = queue_table(reg, req.number, req.profile, datasets=req.datasets, rows=req.rows, models=req.models,
                         seeds=req.seeds, overrides=req.overrides, retry_failed=req.retry_failed)
    if on_report is not None:
        on_report(report)
    todo = len(report.queued) + len(report.to_evaluate)
    # Evaluation in this process runs alone on the machine: its DCI fits may take every core.
    alone_jobs = available_cores()
    with console.progress(f"reproduce table {req.number}", total=todo, unit="run") as overall:
        for ref in report.to_evaluate:
            evaluate_run(reg, ref, device, protocol=report.protocol, jobs=alone_jobs)
            overall.advance()
        if not report.queued:
            return report
        mine = list(report.queued)
        if req.executor == "slurm":
            jobs = submit_slurm_workers(req.workers, db_url=url, folder=str(workspace() / "slurm"),
                                        device=str(device), only=mine, **req.slurm)
            console.info(f"submitted {len(jobs)} worker job(s): {', '.join(str(j.job_id) for j in jobs)}")
            for j in jobs:
                j.result()
            overall.advance(len(report.queued))
        elif req.workers == 1:
            run_worker(reg, device, jobs=alone_jobs, on_run=lambda _r: overall.advance(), only=mine)
        else:
            seen: set[str] = set()

            def poll() -> None:
                for ref in set(report.queued) - seen:
                    run = reg.get_run(ref)
                    if run.status == FINISHED and reg.latest_metrics(run.id, report.protocol):
                        seen.add(ref)
                        overall.advance()

            codes = wait_all(start_local_workers(req.workers, db_url=url, device=str(device), only=mine), poll=poll)
            if any(codes):
                console.warn(f"worker exit codes: {codes}")
    return report
