"""One damaged registry row (a config edited by hand into invalid JSON) must not break every command:
listing commands leave it out with a warning naming it, a command that names it says what is wrong in
one sentence, and `fqvae runs delete` removes it."""

from __future__ import annotations

import json
import sqlite3

import pytest

from fqvae_cli.registry.store import Registry


@pytest.fixture
def damaged(workspace) -> tuple[str, str]:
    """(short id of a good run, short id of a run whose config is '{'), both finished, the bad one with a
    run folder."""
    with Registry() as reg:
        good = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, config={}, name="good")
        bad = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=1, config={}, name="bad")
        for run in (good, bad):
            reg.transition(run.id, "finished")
    (workspace / "runs" / bad.id).mkdir(parents=True)
    (workspace / "runs" / bad.id / "config.json").write_text("{}")
    with sqlite3.connect(workspace / "registry.db") as db:
        db.execute("UPDATE runs SET config='{' WHERE short_id=?", (bad.short_id,))
    return good.short_id, bad.short_id


def _warning(short: str) -> str:
    return (f"warning: left out run {short} has a damaged registry row (its config is not JSON: Expecting property "
            f"name enclosed in double quotes: line 1 column 2 (char 1)); remove it with `fqvae runs delete {short} "
            "--yes`.")


def test_listing_commands_skip_a_damaged_row_and_name_it(cli, damaged):
    good, bad = damaged
    res = cli("runs", "list", "--json")
    assert res.exit_code == 0, res.stderr
    assert [r["short_id"] for r in json.loads(res.stdout)] == [good]
    assert res.stderr.strip() == _warning(bad)
    res = cli("runs", "list")
    assert res.exit_code == 0 and good in res.stdout and bad not in res.stdout
    assert res.stderr.strip() == _warning(bad)
    res = cli("runs", "export", "--format", "json")
    assert res.exit_code == 0 and [r["short_id"] for r in json.loads(res.stdout)] == [good]
    res = cli("table", "--format", "json")
    assert res.exit_code == 0, res.stderr
    assert _warning(bad) in res.stderr


def test_a_damaged_row_is_one_sentence_and_can_be_deleted(cli, damaged, workspace):
    good, bad = damaged
    res = cli("runs", "show", bad)
    assert res.exit_code == 1
    assert res.stderr == (f"error: run {bad} has a damaged registry row (its config is not JSON: Expecting property "
                          f"name enclosed in double quotes: line 1 column 2 (char 1)); remove it with `fqvae runs "
                          f"delete {bad} --yes`.\n")
    res = cli("runs", "delete", bad)
    assert res.exit_code == 2 and "without --yes" in res.stderr
    with Registry() as reg:
        (bad_id,) = [r[0] for r in reg._tx(lambda c: c.exec_driver_sql(
            "SELECT id FROM runs WHERE short_id=?", (bad,)).all(), write=False)]
    res = cli("runs", "delete", bad, "--yes")
    assert res.exit_code == 0, res.stderr
    assert res.stderr.strip() == f"deleted the damaged run {bad} and {workspace / 'runs' / bad_id}."
    assert not (workspace / "runs" / bad_id).exists()
    res = cli("runs", "list", "--json")
    assert res.stderr == "" and [r["short_id"] for r in json.loads(res.stdout)] == [good]
