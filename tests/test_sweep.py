"""Sweeps and workers: grids, the local executor with 2 workers (SQLite and PostgreSQL), a worker
killed mid-run is requeued and its run completes, and submitit's local executor for the Slurm path."""

from __future__ import annotations

import os
import signal

import pytest
from helpers import fqvae_killed_after_first_checkpoint, fqvae_subprocess

from fqvae_cli.runs.sweep import parse_grid

TINY_SET = "set.train.steps=4 set.train.batch_size=8 set.train.checkpoint_every=2 set.train.log_every=2 " \
           "set.eval.mse_images=32 set.model.disc_width=16"


def test_parse_grid_expands_the_product():
    pts = parse_grid("model=qvae,factorqvae seed=0..2 set.beta=1e-4,1e-3")
    assert len(pts) == 2 * 3 * 2
    assert pts[0] == {"model": "qvae", "seed": 0, "set": {"beta": 1e-4}}
    assert {p["model"] for p in pts} == {"qvae", "factorqvae"} and {p["seed"] for p in pts} == {0, 1, 2}
    with pytest.raises(Exception, match="unknown grid key"):
        parse_grid("model=ae color=red")
    with pytest.raises(Exception, match="needs model"):
        parse_grid("seed=0..1")


def _metric_steps_unique(reg, run_id) -> bool:
    rows = [(m.name, m.step, m.protocol) for m in reg.metrics(run_id)]
    return len(rows) == len(set(rows))


def test_local_executor_two_workers_each_run_once(cli, small_data, tiny_protocol, db_url, spawns):
    from fqvae_cli.registry.store import Registry

    grid = f"model=ae,qvae seed=0..1 {TINY_SET} set.eval.protocol=tiny set.train.threads=1"
    res = cli("sweep", "--grid", grid, "--executor", "local", "--workers", "2", "--device", "cpu",
              "--db", db_url)
    assert res.exit_code == 0, res.stderr
    reg = Registry(db_url)
    runs = reg.find_runs()
    assert len(runs) == 4
    for r in runs:
        assert r.status == "finished", (r.short_id, r.status, r.error)
        assert reg.latest_metrics(r.id, "tiny"), r.short_id
        assert _metric_steps_unique(reg, r.id)
        # a worker trains and evaluates in one process: one start, and every row computed by its record
        (start,) = reg.starts([r.id])
        assert {m.provenance for m in reg.metrics(r.id)} == {start.provenance}
        assert reg.provenance([start.provenance])[start.provenance]["threads"] == 1


def test_killed_worker_run_is_requeued_and_completes(small_data, tiny_protocol, workspace, tmp_path):
    from fqvae_cli.registry.store import Registry

    url = f"sqlite:///{tmp_path / 'reg.db'}"
    reg = Registry(url)
    grid = ("model=ae set.train.steps=60 set.train.batch_size=16 set.train.checkpoint_every=20 "
            "set.train.log_every=10 set.eval.protocol=tiny set.train.threads=1 set.eval.mse_images=32")
    from fqvae_cli.runs.sweep import queue_grid

    (short,) = queue_grid(reg, grid)
    env = {"FQVAE_DATA": str(small_data), "FQVAE_HOME": str(workspace), "FQVAE_DB": url,
           "FQVAE_EXPERIMENTS": os.environ["FQVAE_EXPERIMENTS"]}
    # The worker dies by SIGKILL right after its first checkpoint: a crash at a known point.
    w = fqvae_killed_after_first_checkpoint("worker", "--device", "cpu", "--quiet", env=env)
    assert w.returncode == -signal.SIGKILL, w.stderr
    run = reg.get_run(short)
    assert run.status == "running"
    first_ckpt = min(a.step for a in reg.artifacts(run.id, kind="checkpoint"))

    w2 = fqvae_subprocess("worker", "--device", "cpu", "--quiet", "--stale-after", "0", env=env)
    out, err = w2.communicate(timeout=600)
    assert w2.returncode == 0, err
    run = reg.get_run(short)
    assert run.status == "finished" and reg.latest_metrics(run.id, "tiny")
    losses = reg.metrics(run.id, name="loss/total")
    assert max(m.step for m in losses) == 60
    assert first_ckpt == 20 and _metric_steps_unique(reg, run.id)


def test_submitit_local_executor_runs_a_worker(small_data, tiny_protocol, tmp_path, spawns):
    pytest.importorskip("submitit")
    from fqvae_cli.registry.store import Registry
    from fqvae_cli.runs.sweep import queue_grid
    from fqvae_cli.runs.workers import submit_slurm_workers

    url = f"sqlite:///{tmp_path / 'reg.db'}"
    reg = Registry(url)
    queue_grid(reg, f"model=ae {TINY_SET} set.eval.protocol=tiny set.train.threads=1")
    jobs = submit_slurm_workers(1, db_url=url, folder=str(tmp_path / "slurm"), device="cpu", cluster="local",
                                time_min=10)
    assert [j.result() for j in jobs] == [1]
    (run,) = reg.find_runs()
    assert run.status == "finished" and reg.latest_metrics(run.id, "tiny")


def test_reproduce_is_resumable_and_skips_done_cells(cli, small_data, tiny_protocol, spawns):
    from fqvae_cli.registry.store import Registry

    args = ["reproduce", "--paper-table", "1", "--models", "ae,qlae", "--device", "cpu",
            "--set", "train.steps=4", "--set", "train.batch_size=8", "--set", "train.checkpoint_every=2",
            "--set", "eval.protocol=tiny", "--set", "eval.mse_images=32", "--set", "train.threads=1"]
    res = cli(*args)
    assert res.exit_code == 0, res.stderr
    reg = Registry()
    assert sorted(r.model for r in reg.find_runs(status="finished")) == ["ae", "qlae"]
    res2 = cli(*args)
    assert res2.exit_code == 0
    assert "2 cell run(s) done, 0 to train" in res2.stderr
    assert len(reg.find_runs()) == 2
