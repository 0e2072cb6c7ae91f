"""A stop says what it stopped, in one sentence with its exit status: a signal outside training, a worker
stopped while it trains or evaluates (it marks interrupted only the run it interrupted), and the first
render of a dataset (nothing is kept half-written)."""

from __future__ import annotations

import signal
import time

import pytest
from helpers import fqvae_subprocess

from fqvae_cli.registry.store import Registry


@pytest.mark.parametrize("sig, code, said", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")])
def test_stop_signal_outside_training_is_one_sentence_with_its_exit_status(tmp_path, sig, code, said):
    data = tmp_path / "data"
    proc = fqvae_subprocess("data", "prepare", "synth3d", env={"FQVAE_DATA": str(data)})
    deadline = time.monotonic() + 120
    while not list(data.glob(".synth3d.*.partial")):  # rendering has begun: fqvae's handlers are in place
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert f"{said}" in err and "stopped `fqvae data prepare`" in err, err
    assert "Traceback" not in err
    assert not (data / "synth3d").exists()

def test_a_worker_says_interrupted_only_for_a_run_it_interrupted(cli, monkeypatch):
    from fqvae_cli.runs import workers

    reg = Registry()
    run = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, config={}, status="queued")

    def trained_then_stopped_while_evaluating(reg, claimed, device, **kw):
        reg.transition(claimed.id, "finished")
        raise KeyboardInterrupt

    monkeypatch.setattr(workers, "execute", trained_then_stopped_while_evaluating)
    res = cli("worker", "--device", "cpu", "--quiet")
    assert res.exit_code == 130
    assert "marked interrupted" not in res.stderr and "finished" in res.stderr, res.stderr
    assert reg.get_run(run.id).status == "finished"

    other = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=1, config={}, status="queued")

    def stopped_while_training(reg, claimed, device, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(workers, "execute", stopped_while_training)
    res = cli("worker", "--device", "cpu", "--quiet")
    assert res.exit_code == 130 and f"run {other.short_id} was marked interrupted" in res.stderr, res.stderr
    assert reg.get_run(other.id).status == "interrupted"

def test_an_interrupted_first_render_says_what_stopped(cli, tmp_path, monkeypatch):
    from fqvae_cli.data import synthetic

    real = synthetic.store_plan

    def stopped_plan(grid="official", **kw):
        plan = real("small", **kw)

        def fill(images, bar):
            images[:10] = 1
            bar.advance(10)
            raise KeyboardInterrupt

        plan.fill = fill
        return plan

    monkeypatch.setattr(synthetic, "store_plan", stopped_plan)
    root = tmp_path / "data"
    monkeypatch.setenv("FQVAE_DATA", str(root))
    res = cli("train", "--steps", "1")
    assert res.exit_code == 130
    said = " ".join(res.stderr.split())
    assert "stopped preparing dataset 'synth3d'" in said and "nothing was kept half-written" in said, said
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []
    assert Registry().find_runs() == []
