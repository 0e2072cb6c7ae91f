"""The run session (training/session.py): a run killed before its first checkpoint starts again from
iteration 0 with its settings, from `train --resume` and from a worker alike; the stored settings say
what ran; a sweep refuses what `train` refuses; a run that has not finished is not evaluated as if it
had; and no run status is spelled outside the lifecycle module."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TINY

import fqvae_cli
from fqvae_cli.registry.lifecycle import FAILED, FINISHED, QUEUED, RUNNING


def _registry():
    from fqvae_cli.registry.store import Registry

    return Registry()


def _dead_holder() -> str:
    """host:pid of a process that has exited: a holder that was SIGKILLed."""
    from fqvae_cli.registry.liveness import holder_id

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return holder_id(proc.pid)


def _killed_before_its_first_checkpoint(reg, like, name: str, protocol: str | None = None):
    """A run with `like`'s settings whose process died before it wrote a checkpoint: still running in the
    registry, held by a pid that no longer exists, no checkpoint."""
    config = dict(like.config)
    if protocol is not None:
        config["eval"] = {**config["eval"], "protocol": protocol}
    import torch

    from fqvae_cli import provenance

    run = reg.create_run(model=like.model, dataset=like.dataset, profile=like.profile, seed=like.seed,
                         config=config, name=name, worker=_dead_holder(),
                         dataset_fingerprint=like.dataset_fingerprint)
    reg.transition(run.id, RUNNING, provenance=provenance.collect(torch.device("cpu")), step=0)  # it started
    return reg.get_run(run.id)


def _final_weights(reg, run) -> dict:
    from safetensors.torch import load_file

    newest = max(reg.artifacts(run.id, kind="checkpoint"), key=lambda a: a.step)
    return load_file(newest.path)


def _same_weights(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_train_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_again(cli, small_data):
    assert cli("train", "--model", "ae", *TINY, "--name", "ref").exit_code == 0
    reg = _registry()
    ref = reg.get_run("ref")
    killed = _killed_before_its_first_checkpoint(reg, ref, "killed")
    res = cli("train", "--resume", "killed", "--device", "cpu")
    assert res.exit_code == 0, res.stderr
    said = " ".join(res.stderr.split())
    assert (f"run {killed.short_id} (ae on synth3d) stopped before its first checkpoint; it starts again from "
            "iteration 0 with its settings") in said
    run = reg.get_run("killed")
    assert run.status == FINISHED
    assert sorted(a.step for a in reg.artifacts(run.id, kind="checkpoint")) == [3, 6]
    assert _same_weights(_final_weights(reg, ref), _final_weights(reg, run))  # the same settings, the same run


def test_a_worker_starts_a_run_killed_before_its_first_checkpoint_again(cli, small_data, tiny_protocol):
    assert cli("train", "--model", "ae", *TINY, "--name", "ref").exit_code == 0
    reg = _registry()
    ref = reg.get_run("ref")
    killed = _killed_before_its_first_checkpoint(reg, ref, "killed", protocol=tiny_protocol)
    res = cli("worker", "--device", "cpu", "--once", "--quiet")
    assert res.exit_code == 0, res.stderr
    assert (f"run {killed.short_id} stopped before its first checkpoint; it starts again from iteration 0 with its "
            "settings") in " ".join(res.stderr.split())
    run = reg.get_run(killed.id)
    assert run.status == FINISHED, (run.status, run.error, res.stderr)
    assert sorted(a.step for a in reg.artifacts(run.id, kind="checkpoint")) == [3, 6]
    assert _same_weights(_final_weights(reg, ref), _final_weights(reg, run))
    assert "dci_d" in reg.latest_metrics(run.id, tiny_protocol)


def test_a_resume_that_names_a_checkpoint_of_a_run_without_one_is_one_sentence(cli, small_data):
    assert cli("train", "--model", "ae", *TINY, "--name", "ref").exit_code == 0
    reg = _registry()
    killed = _killed_before_its_first_checkpoint(reg, reg.get_run("ref"), "killed")
    res = cli("train", "--resume", "killed", "--checkpoint", "3", "--device", "cpu")
    assert res.exit_code != 0 and "Traceback" not in res.stderr
    assert " ".join(res.stderr.split()) == (f"error: run {killed.short_id} has no checkpoint yet; without "
                                            "--checkpoint it starts again from iteration 0.")
    assert reg.get_run("killed").status == RUNNING  # a refused resume leaves the run as it was


def test_threads_above_the_cores_are_stored_as_the_threads_used(cli, small_data):
    from fqvae_cli.device import available_cores

    args = [a for a in TINY if a != "train.threads=1"]
    args = [a for i, a in enumerate(args) if not (a == "--set" and args[i + 1].startswith("--"))]
    res = cli("train", "--model", "ae", *args, "--set", "train.threads=10000", "--name", "t")
    assert res.exit_code == 0, res.stderr
    cores = available_cores()
    assert (f"train.threads=10000 is more than the {cores} CPU core(s) this process may use; using {cores}."
            in " ".join(res.stderr.split()))
    reg = _registry()
    run = reg.get_run("t")
    assert run.config["train"]["threads"] == cores
    assert {s.step: reg.provenance([s.provenance])[s.provenance]["threads"] for s in reg.starts([run.id])} == {0: cores}


def test_a_sweep_refuses_tensorboard_without_the_extra_as_train_does(cli, small_data, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails as if not installed
    for args in (["train", "--model", "ae", *TINY, "--set", "train.tensorboard=true"],
                 ["sweep", "--grid", "model=ae,qvae set.train.tensorboard=true"]):
        res = cli(*args)
        assert res.exit_code == 2, res.stderr
        assert res.stderr.strip().endswith("install it with: pip install 'fqvae[tensorboard]'")
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert _registry().find_runs() == []  # nothing queued


def test_a_failed_run_with_checkpoints_is_not_evaluated_as_if_it_had_finished(cli, small_data):
    res = cli("train", "--model", "ae", "--steps", "50", "--batch-size", "8", "--set", "train.lr=1e30",
              "--set", "train.lr_min=0", "--set", "train.checkpoint_every=1", "--set", "train.threads=1",
              "--device", "cpu", "--name", "nan")
    assert res.exit_code != 0
    reg = _registry()
    run = reg.get_run("nan")
    assert run.status == FAILED and reg.artifacts(run.id, kind="checkpoint")
    res = cli("evaluate", "nan", "--device", "cpu")
    assert res.exit_code == 2, res.stderr
    assert " ".join(res.stderr.split()) == (
        f"error: run {run.short_id} has not finished training (status failed); evaluate it when it has, or pass "
        "--checkpoint STEP to score a mid-run checkpoint on purpose.")
    assert [m for m in reg.metrics(run.id) if m.protocol is not None] == []  # nothing was scored


def test_no_run_status_is_spelled_outside_the_lifecycle_module():
    package = Path(fqvae_cli.__file__).parent
    spelled = re.compile(r"""["'](queued|running|finished|failed|interrupted)["']""")
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if rel.parts[0] == "migrations" or rel == Path("registry/lifecycle.py"):
            continue  # migrations are frozen history: they never import today's code
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if spelled.search(line):
                found.append(f"{rel}:{n}: {line.strip()}")
    assert found == []
    assert (QUEUED, RUNNING, FINISHED) == ("queued", "running", "finished")  # what the pattern looks for


@pytest.mark.parametrize("cores, device, expected", [(1, "cpu", 1), (2, "cpu", 2), (16, "cpu", 2), (16, "cuda", 1)])
def test_reproduce_workers_follow_the_cores_this_process_may_use(monkeypatch, cores, device, expected):
    import torch

    from fqvae_cli.runs import sweep

    monkeypatch.setattr(sweep, "available_cores", lambda: cores)
    assert sweep.default_workers(torch.device(device)) == expected
