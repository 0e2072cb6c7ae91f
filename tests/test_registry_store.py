"""The registry store API, run against SQLite and a real PostgreSQL server (the `db_url` fixture)."""

from __future__ import annotations

import math
import struct
import time
from datetime import timezone

import pytest

from fqvae_cli.errors import NotFoundError, UsageError
from fqvae_cli.registry.store import MetricRecord, Registry, RunRecord, run_dir


@pytest.fixture
def reg(db_url):
    r = Registry(db_url)
    yield r
    r.close()


def _new(reg: Registry, **kw) -> RunRecord:
    args = {"model": "factorqvae", "dataset": "synth3d", "profile": "quick", "seed": 0,
            "config": {"model": {"beta": 0.1}, "train": {"steps": 10}}}
    args.update(kw)
    return reg.create_run(**args)


def test_create_and_read_back_a_run(reg):
    run = _new(reg, name="first", config={"a": [1, 2], "tiny": 1e-300, "big": 1e300, "nan": math.nan})
    assert len(run.id) == 32 and run.short_id == run.id[:8]
    assert all(c in "0123456789abcdef" for c in run.id)
    assert (run.model, run.dataset, run.profile, run.seed, run.status, run.name) == (
        "factorqvae", "synth3d", "quick", 0, "running", "first")
    assert run.config["a"] == [1, 2] and run.config["tiny"] == 1e-300 and run.config["big"] == 1e300
    assert math.isnan(run.config["nan"])
    assert run.created_at.tzinfo == timezone.utc and run.started_at == run.created_at
    assert run.version == "0.1.0" and run.finished_at is None and run.worker is None
    again = reg.get_run(run.id)
    assert again.id == run.id and again.config["a"] == [1, 2] and again.created_at == run.created_at
    with pytest.raises(UsageError, match="starts as running or queued, not finished"):
        _new(reg, status="finished")
    with pytest.raises(UsageError, match="JSON"):
        _new(reg, config={"x": object()})


def test_short_ids_are_unique_and_references_resolve(reg):
    runs = [_new(reg, seed=i, name=f"run-{i}") for i in range(6)]
    assert len({r.short_id for r in runs}) == 6
    target = runs[3]
    for ref in (target.id, target.short_id, target.id[:6], "run-3", f"  {target.short_id} "):
        assert reg.get_run(ref).id == target.id
    with pytest.raises(NotFoundError) as err:
        reg.get_run("run-33")
    assert "closest: run-3" in str(err.value)
    dup = _new(reg, name="run-3")
    with pytest.raises(UsageError, match="matches 2 runs"):
        reg.get_run("run-3")
    assert reg.get_run(dup.short_id).id == dup.id


def test_unknown_run_in_an_empty_registry(reg):
    with pytest.raises(NotFoundError, match="the registry has no runs"):
        reg.get_run("abcd1234")
    with pytest.raises(NotFoundError):
        reg.transition("0" * 32, "finished")
    with pytest.raises(NotFoundError):
        reg.log_metrics("0" * 32, [("loss", 1.0)])


def test_lifecycle_sets_status_times_and_errors(reg):
    run = _new(reg, status="queued")
    assert run.status == "queued" and run.started_at is None and run.heartbeat_at is None
    reg.transition(run.id, "running", host="node7", device="cuda:1")
    got = reg.get_run(run.id)
    assert (got.status, got.host, got.device) == ("running", "node7", "cuda:1")
    assert got.started_at is not None and got.heartbeat_at is not None
    assert reg.heartbeat(run.id) is True
    assert reg.get_run(run.id).heartbeat_at >= got.heartbeat_at
    reg.transition(run.id, "failed", error="loss became NaN at step 12")
    got = reg.get_run(run.id)
    assert (got.status, got.error) == ("failed", "loss became NaN at step 12") and got.finished_at is not None
    assert reg.heartbeat(run.id) is False  # a finished run tells its worker to stop
    reg.transition(run.id, "queued")
    got = reg.get_run(run.id)
    assert (got.status, got.error, got.started_at, got.finished_at) == ("queued", None, None, None)
    reg.transition(run.id, "running")
    reg.transition(run.id, "interrupted")
    assert reg.get_run(run.id).status == "interrupted"
    reg.transition(run.id, "running")  # resumed
    reg.transition(run.id, "finished")
    assert reg.get_run(run.id).status == "finished"
    with pytest.raises(UsageError, match="unknown run status 'done'"):
        reg.transition(run.id, "done")
    reg.update_config(run.id, {"new": True})
    assert reg.get_run(run.id).config == {"new": True}


def test_metric_values_survive_a_round_trip_exactly(reg):
    run = _new(reg)
    values = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-308, 5e-324, 1.7976931348623157e308,
              0.1 + 0.2, -123456.789, 1 / 3]
    reg.log_metrics(run.id, [(f"m{i}", v, i, "test", "paper") for i, v in enumerate(values)])
    got = reg.metrics(run.id)
    assert [m.name for m in got] == [f"m{i}" for i in range(len(values))]
    for m, v in zip(got, values, strict=True):
        if math.isnan(v):
            assert math.isnan(m.value)
        else:
            # bit-exact, so the sign of zero and the last ulp survive too
            assert struct.pack("<d", m.value) == struct.pack("<d", v), (m.name, m.value, v)
        assert (m.split, m.protocol) == ("test", "paper")
    assert got[2].step == 2 and isinstance(got[0], MetricRecord)


def test_log_metrics_is_all_or_nothing(reg):
    run = _new(reg)
    with pytest.raises(UsageError, match="not a number"):
        reg.log_metrics(run.id, [("a", 1.0), ("b", "oops")])
    with pytest.raises(UsageError, match="integer"):
        reg.log_metrics(run.id, [("a", 1.0), ("b", 2.0, 1.5)])
    assert reg.metrics(run.id) == []
    assert reg.log_metrics(run.id, [("a", 1), ("b", 2.5, 10)]) == 2
    assert reg.log_metrics(run.id, []) == 0
    assert [(m.name, m.value, m.step) for m in reg.metrics(run.id)] == [("a", 1.0, None), ("b", 2.5, 10)]


def test_latest_metrics_takes_the_last_row_per_name(reg):
    run = _new(reg)
    reg.log_metrics(run.id, [("loss", 3.0, 1), ("loss", 2.0, 2), ("d", 0.5, None, "test", "paper"),
                             ("i", 0.4, None, "test", "paper"), ("d", 0.7, None, "test", "paper"),
                             ("d", 0.9, None, "test", "short")])
    assert reg.latest_metrics(run.id, "paper") == {"d": 0.7, "i": 0.4}
    assert reg.latest_metrics(run.id, "short") == {"d": 0.9}
    assert reg.latest_metrics(run.id, None) == {"loss": 2.0}
    assert [m.value for m in reg.metrics(run.id, protocol="paper", name="d")] == [0.5, 0.7]
    other = _new(reg, seed=1)
    reg.log_metrics(other.id, [("loss", 9.0)])
    latest = {(m.run_id, m.key): m.value for m in reg.latest_metric_records([run.id, other.id])}
    assert latest == {(run.id, "loss"): 2.0, (run.id, "paper:d@test"): 0.7, (run.id, "paper:i@test"): 0.4,
                      (run.id, "short:d@test"): 0.9, (other.id, "loss"): 9.0}


def test_find_runs_filters_on_every_grouping_column(reg):
    a = _new(reg, model="factorqvae", dataset="shapes3d", seed=0)
    b = _new(reg, model="factorqvae", dataset="shapes3d", seed=1, status="queued")
    c = _new(reg, model="qlae", dataset="shapes3d", seed=0, profile="paper")
    assert [r.id for r in reg.find_runs()] == [a.id, b.id, c.id]
    assert [r.id for r in reg.find_runs(model="factorqvae")] == [a.id, b.id]
    assert [r.id for r in reg.find_runs(seed=0)] == [a.id, c.id]
    assert [r.id for r in reg.find_runs(profile="paper")] == [c.id]
    assert [r.id for r in reg.find_runs(status="queued")] == [b.id]
    assert [r.id for r in reg.find_runs(status=["queued", "running"], dataset="shapes3d")] == [a.id, b.id, c.id]
    assert reg.find_runs(dataset="mpi3d") == []


def test_artifacts_and_delete(reg):
    run = _new(reg)
    keep = _new(reg, seed=1)
    ck = reg.add_artifact(run.id, kind="checkpoint", path=run_dir(run) / "ckpt.safetensors", bytes=1234,
                          sha256="ab" * 32, step=500)
    fig = reg.add_artifact(run.id, kind="figure", path="fig.png", bytes=10, sha256="cd" * 32)
    reg.add_artifact(keep.id, kind="figure", path="other.png", bytes=1, sha256="ef" * 32)
    assert (ck.kind, ck.bytes, ck.step, ck.path) == ("checkpoint", 1234, 500, str(run_dir(run) / "ckpt.safetensors"))
    assert [a.id for a in reg.artifacts(run.id)] == [ck.id, fig.id]
    assert [a.id for a in reg.artifacts(run.id, "figure")] == [fig.id]
    with pytest.raises(UsageError, match="sha256"):
        reg.add_artifact(run.id, kind="figure", path="x", bytes=1, sha256="xyz")
    reg.remove_artifact(fig.id)
    assert [a.id for a in reg.artifacts(run.id)] == [ck.id]
    with pytest.raises(NotFoundError):
        reg.remove_artifact(fig.id)
    reg.log_metrics(run.id, [("loss", 1.0)])
    reg.log_metrics(keep.id, [("loss", 2.0)])
    assert reg.delete_run(run.id).id == run.id
    with pytest.raises(NotFoundError):
        reg.get_run(run.id)
    assert reg.metrics(run.id) == [] and reg.artifacts(run.id) == []
    assert [m.value for m in reg.metrics(keep.id)] == [2.0] and len(reg.artifacts(keep.id)) == 1


def test_claim_takes_the_oldest_queued_run_once(reg):
    queued = [_new(reg, seed=i, status="queued") for i in range(3)]
    _new(reg, seed=9)  # running: never claimed
    first = reg.claim_next_queued("w1")
    assert first.id == queued[0].id and (first.status, first.worker) == ("running", "w1")
    assert first.heartbeat_at is not None
    assert [reg.claim_next_queued("w2").id for _ in range(2)] == [queued[1].id, queued[2].id]
    assert reg.claim_next_queued("w1") is None


def test_requeue_stale_uses_heartbeat_age(reg):
    alive = _new(reg, seed=0, status="queued")
    dead = _new(reg, seed=1, status="queued")
    reg.claim_next_queued("w1")
    reg.claim_next_queued("w2")
    assert reg.requeue_stale(3600) == []
    time.sleep(0.05)
    reg.heartbeat(alive.id)
    # 0.03 s: older than dead's heartbeat (>= 0.05 s ago), younger than alive's (just now)
    assert reg.requeue_stale(0.03) == [dead.id]
    got = reg.get_run(dead.id)
    assert (got.status, got.worker, got.heartbeat_at) == ("queued", None, None)
    assert reg.get_run(alive.id).status == "running"
    assert reg.heartbeat(dead.id) is False
    assert reg.claim_next_queued("w3").id == dead.id


def test_import_runs_keeps_ids_and_times_and_is_all_or_nothing(reg):
    import dataclasses
    from datetime import datetime

    from fqvae_cli.registry.store import ArtifactRow, MetricRow

    made = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=timezone.utc)
    run = RunRecord(id="ab" * 16, short_id="abababab", name="away", model="qlae", dataset="synth3d",
                    profile="quick", seed=2, status="finished", config={"nan": math.nan, "k": [1]},
                    created_at=made, started_at=made, finished_at=made, heartbeat_at=None, host="gpu-7",
                    device="cuda:0", version="0.0.9", code_revision="abc", error=None, worker="gpu-7:12",
                    dataset_fingerprint={"name": "synth3d", "n_images": 648})
    metrics = [MetricRow("loss", 2.0, 1, "train"), MetricRow("dci_d", -0.0, 6, "eval", "tiny"),
               MetricRow("infom", math.nan, 6, "eval", "tiny")]
    arts = [ArtifactRow("checkpoint", "/w/runs/x/checkpoints/s.safetensors", 7, "1" * 64, 6, made)]
    clash = dataclasses.replace(run, id="cd" * 16, short_id=_new(reg).short_id)
    with pytest.raises(UsageError, match="already holds a run with the id or short id"):
        reg.import_runs([(run, metrics, arts), (clash, [], [])])
    assert reg.runs_matching(ids=[run.id, clash.id]) == []  # the first run was rolled back with the second
    reg.import_runs([(run, metrics, arts)])
    got = reg.get_run("away")
    assert dataclasses.replace(got, config={}) == dataclasses.replace(run, config={})
    assert math.isnan(got.config["nan"]) and got.config["k"] == [1]
    rows = reg.metrics(run.id)
    assert [(m.name, m.step, m.split, m.protocol) for m in rows] == [(m.name, m.step, m.split, m.protocol)
                                                                      for m in metrics]
    assert math.copysign(1.0, rows[1].value) == -1.0 and math.isnan(rows[2].value)
    (a,) = reg.artifacts(run.id)
    assert (a.kind, a.path, a.bytes, a.sha256, a.step, a.created_at) == (*dataclasses.astuple(arts[0])[:5], made)
    assert [r.id for r in reg.runs_matching(short_ids=["abababab"], names=["nosuch"])] == [run.id]
    with pytest.raises(UsageError, match="only a stopped run can be imported"):
        reg.import_runs([(dataclasses.replace(run, id="ef" * 16, short_id="efefefef", status="running"), [], [])])
