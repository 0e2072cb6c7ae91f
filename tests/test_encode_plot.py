"""`fqvae encode` round-trips with `evaluate` through `fqvae score`, `fqvae runs plot` draws training
curves, and a stopped `fqvae reproduce` leaves no worker behind."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from helpers import TINY, fqvae_subprocess

from fqvae_cli.metrics import METRICS
from fqvae_cli.registry.store import Registry


@pytest.mark.parametrize("model", ["qvae", "betavae"])  # discrete and continuous codes
def test_encode_then_score_reproduces_evaluate(cli, small_data, tiny_protocol, tmp_path, model):
    res = cli("train", "--model", model, *TINY, "--name", f"enc-{model}")
    assert res.exit_code == 0, res.stderr
    ev = cli("evaluate", f"enc-{model}", "--protocol", "tiny", "--seed", "3", "--jobs", "1", "--metrics", "all",
             "--json")
    assert ev.exit_code == 0, ev.stderr
    expected = json.loads(ev.stdout)
    every_key = [k for m in METRICS.values() for k in m.keys] + ["mse"]
    assert list(expected) == every_key
    for key in ("factor_vae", "factor_vae_train", "beta_vae", "beta_vae_train", "mig", "sap", "modularity"):
        assert 0.0 <= expected[key] <= 1.0, key
    shown = json.loads(cli("runs", "show", f"enc-{model}", "--json").stdout)
    recorded = {m["name"]: m["value"] for m in shown["metrics"] if m["protocol"] == "tiny"}
    assert recorded == pytest.approx(expected)  # `runs show` lists every metric recorded
    out = tmp_path / "enc"
    res = cli("encode", f"enc-{model}", "--out", str(out), "--protocol", "tiny", "--seed", "3")
    assert res.exit_code == 0, res.stderr
    meta = json.loads((out / "meta.json").read_text())
    assert meta["protocol"] == "tiny" and meta["discrete"] == (model == "qvae") and meta["rows"] == 450
    sc = cli("score", "--codes", str(out / "codes.npy"), "--factors", str(out / "factors.npy"), "--metrics", "all",
             "--json")
    assert sc.exit_code == 0, sc.stderr
    got = json.loads(sc.stdout)
    assert list(got) == [k for name in ("dci", "infomec", "mig", "sap", "modularity", "irs", "unsupervised")
                         for k in METRICS[name].keys]
    for key in got:
        assert got[key] == expected[key], key  # exactly, not approximately


def test_runs_plot_overlays_runs_with_log_losses(cli, small_data, tmp_path):
    for name in ("a", "b"):
        assert cli("train", "--model", "ae", *TINY, "--name", name).exit_code == 0
    out = tmp_path / "curves.svg"
    res = cli("runs", "plot", "a", "b", "--metric", "loss/total,lr", "--smooth", "2", "--out", str(out))
    assert res.exit_code == 0, res.stderr
    assert out.read_text().lstrip().startswith("<?xml") and res.stdout.strip() == str(out)
    res = cli("runs", "plot", "a", "--metric", "nosuch", "--out", str(tmp_path / "x.png"))
    assert res.exit_code == 2 and "logged metrics" in res.stderr
    import numpy as np

    from fqvae_cli.figures.curves import smooth, spans_decades

    assert smooth(np.array([1.0, 3.0, 5.0]), 2).tolist() == [1.0, 2.0, 4.0]
    assert spans_decades([np.array([100.0, 0.5])]) and not spans_decades([np.array([2.0, 0.5])])


def test_sigterm_to_reproduce_stops_its_workers(small_data, tiny_protocol, workspace, tmp_path):
    url = f"sqlite:///{tmp_path / 'reg.db'}"
    env = {"FQVAE_DATA": str(small_data), "FQVAE_HOME": str(workspace), "FQVAE_DB": url,
           "FQVAE_EXPERIMENTS": os.environ["FQVAE_EXPERIMENTS"]}
    parent = fqvae_subprocess("reproduce", "--models", "ae,qlae", "--workers", "2", "--device", "cpu",
                              "--set", "train.steps=3000", "--set", "train.batch_size=8",
                              "--set", "train.checkpoint_every=10", "--set", "train.log_every=5",
                              "--set", "eval.protocol=tiny", "--set", "train.threads=1", env=env)
    reg = Registry(url)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        running = reg.find_runs(status="running")
        if len(running) == 2 and all(reg.artifacts(r.id, kind="checkpoint") for r in running):
            break
        time.sleep(0.2)
    else:
        parent.kill()
        pytest.fail("the workers never both started")
    pids = [int(r.worker.rpartition(":")[2]) for r in running]
    parent.send_signal(signal.SIGTERM)
    _, err = parent.communicate(timeout=180)
    assert parent.returncode == 143, err
    for pid in pids:  # no worker outlives its parent
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    settled = {(r.status, r.error) for r in reg.find_runs()}
    assert {status for status, _ in settled} == {"interrupted"}, settled
