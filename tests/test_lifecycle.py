"""The run lifecycle: every pair of statuses is allowed or refused the same way by lifecycle.py, by the
store and by the database itself (a CHECK constraint and a trigger, migration 0004), on SQLite and
PostgreSQL; a registry written at 0003 upgrades and keeps its rows."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from fqvae_cli.errors import UsageError
from fqvae_cli.registry import lifecycle, migrate
from fqvae_cli.registry.lifecycle import FAILED, FINISHED, INTERRUPTED, QUEUED, RUNNING, STATUSES
from fqvae_cli.registry.schema import HEAD
from fqvae_cli.registry.store import Registry

PAIRS = list(itertools.product(STATUSES, STATUSES))
# The whole table, written out: a change to lifecycle.TRANSITIONS must change this test (and a migration).
LEGAL = {(QUEUED, RUNNING), (RUNNING, FINISHED), (RUNNING, FAILED), (RUNNING, INTERRUPTED), (RUNNING, QUEUED),
         (INTERRUPTED, RUNNING), (INTERRUPTED, QUEUED), (FAILED, RUNNING), (FAILED, QUEUED)}


def test_the_rules():
    assert {(a, b) for a, b in PAIRS if a != b and lifecycle.allowed(a, b)} == LEGAL
    assert all(lifecycle.allowed(s, s) for s in STATUSES)
    with pytest.raises(UsageError, match="run x is finished; it cannot become running"):
        lifecycle.require("x", FINISHED, RUNNING)
    with pytest.raises(UsageError, match="unknown run status 'done'"):
        lifecycle.require("x", RUNNING, "done")


@pytest.mark.parametrize("status, alive, evaluated, step", [
    (FINISHED, True, True, "done"), (FINISHED, True, False, "evaluate"), (QUEUED, True, False, "queued"),
    (RUNNING, True, False, "busy"), (RUNNING, False, False, "resume"), (INTERRUPTED, True, False, "resume"),
    (FAILED, True, False, "failed")])
def test_next_step(status, alive, evaluated, step):
    assert lifecycle.next_action(status, holder_alive=alive, evaluated=evaluated) == step


def _run_at(reg: Registry, status: str):
    """A run brought to `status` by legal moves."""
    run = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, config={},
                         status=QUEUED if status == QUEUED else RUNNING)
    if status not in (QUEUED, RUNNING):
        reg.transition(run.id, status, error="why" if status == FAILED else None)
    return reg.get_run(run.id)


def test_every_move_through_the_store_and_raw_sql(db_url):
    engine = create_engine(db_url)
    try:
        with Registry(db_url) as reg:
            for old, new in PAIRS:
                run = _run_at(reg, old)
                if old == new or (old, new) in LEGAL:
                    assert reg.transition(run.id, new) is True
                    assert reg.get_run(run.id).status == new
                else:
                    with pytest.raises(UsageError, match=f"is {old}; it cannot become {new}"):
                        reg.transition(run.id, new)
                    assert reg.get_run(run.id).status == old
                # The same move written by hand, past the store: the database decides alike.
                run = _run_at(reg, old)
                update = text("UPDATE runs SET status = :new WHERE id = :id")
                if old == new or (old, new) in LEGAL:
                    with engine.begin() as conn:
                        conn.execute(update, {"new": new, "id": run.id})
                    assert reg.get_run(run.id).status == new
                else:
                    with pytest.raises(DBAPIError, match="illegal run status change"), engine.begin() as conn:
                        conn.execute(update, {"new": new, "id": run.id})
                    assert reg.get_run(run.id).status == old
            run = _run_at(reg, RUNNING)
            with pytest.raises(DBAPIError, match="illegal run status change|ck_runs_status"), engine.begin() as conn:
                conn.execute(text("UPDATE runs SET status = 'done' WHERE id = :id"), {"id": run.id})
            with pytest.raises(DBAPIError, match="ck_runs_status"), engine.begin() as conn:
                conn.execute(text("INSERT INTO runs (id, short_id, model, dataset, profile, seed, status, config, "
                                  "created_at) VALUES ('ab', 'ab', 'ae', 'synth3d', 'quick', 0, 'paused', '{}', "
                                  "CURRENT_TIMESTAMP)"))
    finally:
        engine.dispose()


def test_only_from_and_holder_make_a_move_conditional(db_url):
    with Registry(db_url) as reg:
        run = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, config={}, worker="h:1")
        assert reg.transition(run.id, INTERRUPTED, only_from=(RUNNING,), holder="h:2") is False
        assert reg.transition(run.id, INTERRUPTED, only_from=(QUEUED,)) is False
        assert reg.get_run(run.id).status == RUNNING
        assert reg.transition(run.id, INTERRUPTED, only_from=(RUNNING,), holder="h:1") is True
        assert reg.get_run(run.id).status == INTERRUPTED


def test_a_registry_at_0003_upgrades_keeping_its_runs_and_then_refuses_illegal_moves(db_url):
    assert migrate.upgrade(db_url, target="0003").after == "0003"
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            for i, status in enumerate(STATUSES):
                conn.execute(text(
                    "INSERT INTO runs (id, short_id, name, model, dataset, profile, seed, status, config, created_at) "
                    "VALUES (:id, :short, :name, 'ae', 'synth3d', 'quick', 0, :status, '{}', CURRENT_TIMESTAMP)"),
                    {"id": f"{i:032x}", "short": f"{i:08x}", "name": status, "status": status})
        assert migrate.upgrade(db_url).after == HEAD
        with Registry(db_url) as reg:
            assert [reg.get_run(s).status for s in STATUSES] == list(STATUSES)
            with pytest.raises(UsageError, match="is finished; it cannot become queued"):
                reg.transition(reg.get_run(FINISHED).id, QUEUED)
        with pytest.raises(DBAPIError, match="illegal run status change"), engine.begin() as conn:
            conn.execute(text("UPDATE runs SET status = 'running' WHERE name = 'finished'"))
    finally:
        engine.dispose()
