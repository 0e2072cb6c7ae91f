"""Resuming a run: from its newest checkpoint that verifies, or a chosen one; every refusal (new settings,
a missing iteration, no checkpoint that verifies, a live holder, other data) leaves the run as it was; a
full disk during a checkpoint keeps the last good one; a run whose local holder died is taken over or
requeued. The exact resume after SIGKILL is in test_train.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY, stop_after_checkpoint

from fqvae_cli.registry.store import Registry

# ---- from the newest good checkpoint -------------------------------------------------------------

@pytest.fixture
def stopped_run(cli, small_data, workspace, monkeypatch):
    """A tiny 12-iteration run stopped (Ctrl-C) right after its checkpoint at 9, with checkpoints at 3, 6, 9."""
    with monkeypatch.context() as m:
        stop_after_checkpoint(m, 9)
        res = cli("train", "--model", "ae", *TINY, "--steps", "12", "--set", "train.keep_checkpoints=4",
                  "--name", "r")
    assert res.exit_code == 130, res.stderr
    with Registry() as reg:
        run = reg.get_run("r")
        weights = {a.step: Path(a.path) for a in reg.artifacts(run.id, kind="checkpoint")}
    assert run.status == "interrupted" and sorted(weights) == [3, 6, 9]
    return run, weights

def _status(ref="r"):
    with Registry() as reg:
        return reg.get_run(ref).status

@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_resume_falls_back_to_the_newest_checkpoint_that_verifies(cli, stopped_run, damage):
    from safetensors.numpy import load_file

    _run, weights = stopped_run
    original = load_file(str(weights[9]))
    if damage == "truncate":
        data = weights[9].read_bytes()
        weights[9].write_bytes(data[: len(data) // 2])
    else:
        weights[9].unlink()
    res = cli("train", "--resume", "r")
    assert res.exit_code == 0, res.stderr
    assert "skipping the checkpoint at iteration 9" in res.stderr
    assert "from iteration 6" in res.stderr
    assert _status() == "finished"
    resumed = load_file(str(weights[9]))  # iteration 9 again, trained from 6: the same numbers
    assert all(np.array_equal(resumed[k], original[k]) for k in original)
    if damage == "truncate":
        assert weights[9].with_name(weights[9].name + ".set-aside").exists()  # kept, not deleted

def test_refused_resumes_leave_the_run_as_it_was(cli, stopped_run):
    _run, weights = stopped_run
    res = cli("train", "--resume", "r", "--steps", "5", "--set", "train.lr=1e-4")
    assert res.exit_code == 2 and "drop --steps, --set" in res.stderr, res.stderr
    res = cli("train", "--resume", "r", "--checkpoint", "4")
    assert res.exit_code != 0 and "has no checkpoint at iteration 4; it has: 3, 6, 9" in res.stderr
    assert _status() == "interrupted"
    assert cli("train", "--checkpoint", "3").exit_code == 2  # --checkpoint only with --resume
    for step, w in weights.items():  # every one fails its sha256: none is left to fall back to
        if step == 9:  # one byte changed
            data = bytearray(w.read_bytes())
            data[-1] ^= 0x01
            w.write_bytes(bytes(data))
        else:
            w.write_bytes(b"broken")
    res = cli("train", "--resume", "r", "--device", "cpu")
    assert res.exit_code != 0 and "Traceback" not in res.stderr
    assert "no checkpoint that verifies" in res.stderr and "iteration 3" in res.stderr and "sha256" in res.stderr
    assert _status() == "interrupted"  # a refused resume never marks the run failed

def test_resume_chooses_an_older_checkpoint(cli, stopped_run):
    _run, weights = stopped_run
    res = cli("train", "--resume", "r", "--checkpoint", "3")
    assert res.exit_code == 0, res.stderr
    assert "from iteration 3" in res.stderr and "6, 9" in res.stderr  # the newer two set aside
    assert weights[6].with_name(weights[6].name + ".set-aside").exists()
    assert _status() == "finished"


_FULL_DISK = """
import os, resource, sys
from fqvae_cli.training import recorder
_save = recorder.Recorder.checkpoint
def checkpoint(self, iteration, model, state):
    if self.last_checkpoint:  # after the first checkpoint: files may not grow past a size below a checkpoint's
        limit = int(os.environ["LIMIT_BYTES"])
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    _save(self, iteration, model, state)
recorder.Recorder.checkpoint = checkpoint
from fqvae_cli.cli.main import main
main(sys.argv[1:])
"""

def test_full_disk_during_a_checkpoint_keeps_the_last_good_one(small_data, workspace, tmp_path):
    probe = subprocess.run([sys.executable, "-m", "fqvae_cli", "train", "--model", "ae", *TINY, "--steps", "3",
                            "--name", "probe"], capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    with Registry() as reg:
        arts = reg.artifacts(reg.get_run("probe").id)
    smallest = min(a.bytes for a in arts if a.kind.startswith("checkpoint"))
    env = {**os.environ, "FQVAE_PLAIN_PROGRESS": "1", "LIMIT_BYTES": str(smallest - 1)}
    res = subprocess.run([sys.executable, "-c", _FULL_DISK, "train", "--model", "ae", *TINY,
                          "--name", "r"], capture_output=True, text=True, env=env)
    assert res.returncode == 1, res.stderr
    assert "could not write the checkpoint at iteration 6" in res.stderr and "Traceback" not in res.stderr
    with Registry() as reg:
        run = reg.get_run("r")
        steps = sorted({a.step for a in reg.artifacts(run.id) if a.kind.startswith("checkpoint")})
    assert run.status == "interrupted" and "disk" in run.error
    assert steps == [3]
    ckpts = sorted(p.name for p in (workspace / "runs" / run.id / "checkpoints").iterdir())
    assert ckpts == ["step_00000003.safetensors", "step_00000003.state.pt"]  # nothing half-written

# ---- one writer per run --------------------------------------------------------------------------

def test_resume_claim_refuses_a_live_holder_and_names_it(workspace):
    reg = Registry()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        who = f"{socket.gethostname()}:{holder.pid}"
        run = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, config={}, worker=who)
        with pytest.raises(Exception, match=f"is being trained by {who}"):
            reg.claim_for_resume(run.id, pid=os.getpid())
        # a live local holder is never requeued, however short the staleness limit
        assert reg.requeue_stale(0) == []
    finally:
        holder.kill()
        holder.wait()
    claimed = reg.claim_for_resume(run.id, pid=os.getpid())  # its process is gone: take it over
    assert claimed.status == "running" and claimed.worker.endswith(f":{os.getpid()}")
    reg.transition(run.id, "finished")
    with pytest.raises(Exception, match="already finished"):
        reg.claim_for_resume(run.id)

def test_resume_of_a_live_run_is_refused_through_the_cli(cli, workspace, small_data):
    from fqvae_cli.experiments import resolve_run_config

    reg = Registry()
    holder = os.getppid()  # a live process on this machine that is not this one
    cfg = resolve_run_config("ae", None, "quick", 0)
    run = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, name="live",
                         config=cfg.model_dump(mode="json"), worker=f"{socket.gethostname()}:{holder}")
    res = cli("train", "--resume", "live")
    assert res.exit_code == 2 and "is being trained by" in res.stderr, res.stderr
    assert reg.get_run(run.id).worker.endswith(f":{holder}")
    res = cli("worker", "--stale-after", "-1", "--once")
    assert res.exit_code == 2


def test_a_dead_local_run_can_be_deleted_and_is_requeued(cli, workspace):
    from fqvae_cli.experiments import resolve_run_config
    from fqvae_cli.runs.sweep import queue_table

    dead = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # no process can have this pid
    reg = Registry()
    cfg = resolve_run_config("ae", None, "quick", 0)
    who = f"{socket.gethostname()}:{dead}"
    a = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, config=cfg.model_dump(mode="json"),
                       worker=who)
    report = queue_table(reg, "1", "quick", models=["ae"])
    assert report.busy == [] and report.queued == [a.short_id] and reg.get_run(a.id).status == "queued"
    b = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=1, config={}, worker=who)
    res = cli("runs", "delete", b.short_id, "--yes")
    assert res.exit_code == 0, res.stderr

# ---- data that matches its run -------------------------------------------------------------------

def test_resume_against_other_data_is_refused_naming_both(cli, workspace, small_data):
    from fqvae_cli.experiments import resolve_run_config
    from fqvae_cli.runs.cell_sources import dataset_identity

    reg = Registry()
    cfg = resolve_run_config("ae", None, "quick", 0)
    other = {**dataset_identity("synth3d"), "n_images": 480000, "factor_sizes": [10, 10, 10, 8, 4, 15]}
    other["source"] = {**other["source"], "grid": "official"}
    reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, name="full", status="queued",
                   config=cfg.model_dump(mode="json"), dataset_fingerprint=other)
    res = cli("train", "--resume", "full")
    assert res.exit_code == 1, res.stderr
    assert "480,000 images" in res.stderr and "648 images" in res.stderr and len(res.stderr.splitlines()) == 1
    assert reg.get_run("full").status == "queued"
