"""Many processes on one registry, on SQLite and PostgreSQL: concurrent writers, concurrent claimers,
concurrent creation of a fresh database, and a writer killed in the middle of a batch.

Processes are started with `spawn` (a clean interpreter, as on a cluster) and meet at a barrier before
touching the database, so they really do contend."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time

from fqvae_cli.registry.schema import HEAD
from fqvae_cli.registry.store import Registry

CTX = mp.get_context("spawn")
WAIT_S = 120  # generous: two shared cores, spawned interpreters importing sqlalchemy


def _run_all(target, args_list):
    """Start one process per args tuple (each receives barrier, results queue, *args); return all
    results they put, after checking every process exited cleanly."""
    barrier, results = CTX.Barrier(len(args_list)), CTX.Queue()
    procs = [CTX.Process(target=target, args=(barrier, results, *args)) for args in args_list]
    for p in procs:
        p.start()
    out = []
    try:
        for _ in procs:
            out.append(results.get(timeout=WAIT_S))
    finally:
        for p in procs:
            p.join(timeout=WAIT_S)
            if p.is_alive():
                p.kill()
    errors = [r for r in out if isinstance(r, str)]
    assert errors == []
    assert [p.exitcode for p in procs] == [0] * len(procs)
    return out


def _report(results, fn):
    try:
        results.put(fn())
    except BaseException as exc:  # noqa: BLE001 - sent to the parent, which fails the test with it
        results.put(f"{type(exc).__name__}: {exc}")


def _writer(barrier, results, url, run_id, worker, n):
    def work():
        reg = Registry(url)
        barrier.wait(WAIT_S)
        for i in range(n):  # one transaction per row: the most lock traffic
            reg.log_metrics(run_id, [(f"w{worker}", float(i), i)])
        reg.close()
        return [worker]

    _report(results, work)


def _claimer(barrier, results, url, worker):
    def work():
        reg = Registry(url)
        barrier.wait(WAIT_S)
        claimed = []
        while (run := reg.claim_next_queued(worker)) is not None:
            claimed.append(run.id)
        reg.close()
        return worker, claimed

    _report(results, work)


def _opener(barrier, results, url):
    def work():
        barrier.wait(WAIT_S)
        reg = Registry(url)
        reg.close()
        return [reg.schema.after]

    _report(results, work)


def test_eight_writers_lose_no_row(db_url):
    reg = Registry(db_url)
    run = reg.create_run(model="m", dataset="d", profile="p", seed=0, config={})
    _run_all(_writer, [(db_url, run.id, w, 200) for w in range(8)])
    rows = reg.metrics(run.id)
    assert len(rows) == 1600
    assert {(m.name, m.step, m.value) for m in rows} == {
        (f"w{w}", i, float(i)) for w in range(8) for i in range(200)}
    reg.close()


def test_four_claimers_take_each_queued_run_once(db_url):
    reg = Registry(db_url)
    ids = [reg.create_run(model="m", dataset="d", profile="p", seed=s, config={}, status="queued").id
           for s in range(50)]
    claims = dict(_run_all(_claimer, [(db_url, f"worker-{w}") for w in range(4)]))
    flat = [rid for claimed in claims.values() for rid in claimed]
    assert len(flat) == 50 and sorted(flat) == sorted(ids)
    # the registry agrees on who holds each run
    owner = {rid: worker for worker, claimed in claims.items() for rid in claimed}
    assert {r.id: r.worker for r in reg.find_runs(status="running")} == owner
    reg.close()


def test_many_processes_create_a_fresh_registry_once(db_url):
    assert _run_all(_opener, [(db_url,)] * 4) == [[HEAD]] * 4
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
    engine.dispose()


def _killed_in_commit(url, run_id, ready):
    from sqlalchemy import event

    reg = Registry(url)
    reg.log_metrics(run_id, [("kept", float(i), i) for i in range(500)])

    def hang(_conn):
        ready.set()
        time.sleep(600)

    # Fires after every INSERT of the batch has run, just before COMMIT is sent.
    event.listen(reg._engine, "commit", hang)
    reg.log_metrics(run_id, [("lost", float(i), i) for i in range(500)])


def _killed_anywhere(url, run_id, ready):
    reg = Registry(url)
    batch = 0
    while True:
        reg.log_metrics(run_id, [(f"b{batch}", float(i), i) for i in range(400)])
        batch += 1
        ready.set()


def _kill_when_ready(target, url, run_id, delay):
    ready = CTX.Event()
    p = CTX.Process(target=target, args=(url, run_id, ready))
    p.start()
    try:
        assert ready.wait(WAIT_S), "the writer never got going"
        time.sleep(delay)
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.join(WAIT_S)
    assert p.exitcode == -signal.SIGKILL


def test_writer_killed_before_commit_leaves_no_partial_batch(db_url):
    reg = Registry(db_url)
    run = reg.create_run(model="m", dataset="d", profile="p", seed=0, config={})
    reg.close()
    _kill_when_ready(_killed_in_commit, db_url, run.id, 0.0)
    reg = Registry(db_url)  # opens after the crash
    names = [m.name for m in reg.metrics(run.id)]
    assert names.count("kept") == 500 and names.count("lost") == 0
    reg.log_metrics(run.id, [("after", 1.0)])  # and is writable
    assert reg.latest_metrics(run.id, None)["after"] == 1.0
    reg.close()


def test_writer_killed_at_a_random_moment_leaves_whole_batches(db_url):
    reg = Registry(db_url)
    run = reg.create_run(model="m", dataset="d", profile="p", seed=0, config={})
    reg.close()
    _kill_when_ready(_killed_anywhere, db_url, run.id, random.uniform(0.0, 0.3))
    reg = Registry(db_url)
    counts: dict[str, int] = {}
    for m in reg.metrics(run.id):
        counts[m.name] = counts.get(m.name, 0) + 1
    assert counts and set(counts.values()) == {400}
    # batches are committed in order, so the ones present are exactly b0..bN
    assert sorted(counts, key=lambda n: int(n[1:])) == [f"b{i}" for i in range(len(counts))]
    reg.close()


def test_threads_share_one_registry(db_url):
    import threading

    reg = Registry(db_url)
    run = reg.create_run(model="m", dataset="d", profile="p", seed=0, config={})
    failures = []

    def work(t):
        try:
            for i in range(50):
                reg.log_metrics(run.id, [(f"t{t}", float(i), i)])
                reg.heartbeat(run.id)  # as a training loop's heartbeat thread would
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert sorted((m.name, m.step) for m in reg.metrics(run.id)) == sorted(
        (f"t{t}", i) for t in range(4) for i in range(50))
    reg.close()


def _forked_child(reg, run_id, results):
    _report(results, lambda: reg.log_metrics(run_id, [("child", 1.0)]))


def test_a_forked_child_reconnects_instead_of_sharing_the_pool(db_url):
    reg = Registry(db_url)
    run = reg.create_run(model="m", dataset="d", profile="p", seed=0, config={})
    reg.log_metrics(run.id, [("parent", 0.0)])  # leaves a pooled connection to inherit
    ctx = mp.get_context("fork")
    results = ctx.Queue()
    p = ctx.Process(target=_forked_child, args=(reg, run.id, results))
    p.start()
    assert results.get(timeout=WAIT_S) == 1
    p.join(WAIT_S)
    assert p.exitcode == 0
    reg.log_metrics(run.id, [("parent", 2.0)])  # the parent's pool still works
    assert [m.name for m in reg.metrics(run.id)] == ["parent", "child", "parent"]
    reg.close()
