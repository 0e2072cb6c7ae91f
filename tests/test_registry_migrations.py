"""Schema versions: the ORM and the migrations agree, upgrades keep rows, and databases that must not be
touched (corrupted, foreign, newer, unreachable) are refused with one sentence and left byte-for-byte alone."""

from __future__ import annotations

import fnmatch
import math
import sqlite3
from pathlib import Path

import pytest

from fqvae_cli.errors import RegistryError
from fqvae_cli.registry import migrate
from fqvae_cli.registry.schema import HEAD, REVISIONS, Base
from fqvae_cli.registry.store import Registry

ROOT = Path(__file__).resolve().parents[1]


def _exec(url: str, *statements: str, params: list[dict] | None = None) -> list:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            out = []
            for i, stmt in enumerate(statements):
                result = conn.execute(text(stmt), (params or [{}] * len(statements))[i])
                out.append(result.all() if result.returns_rows else None)
            return out
    finally:
        engine.dispose()


def test_revisions_constant_matches_the_migration_scripts():
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert [r.revision for r in reversed(list(script.walk_revisions()))] == list(REVISIONS)
    assert script.get_current_head() == HEAD == "0005"


def test_orm_and_migrations_agree(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    Registry(db_url).close()  # builds the schema by running every migration
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
            assert compare_metadata(ctx, Base.metadata) == []
    finally:
        engine.dispose()


def test_downgrade_to_base_and_back(db_url):
    from alembic import command
    from sqlalchemy import create_engine, inspect

    Registry(db_url).close()
    engine = migrate.make_engine(db_url, foreign_keys=False)
    with engine.begin() as conn:
        command.downgrade(migrate.alembic_config(conn), "base")
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) == {"alembic_version"}
    engine.dispose()
    assert migrate.upgrade(db_url).after == HEAD
    check = create_engine(db_url)
    with check.connect() as conn:
        assert {"runs", "metrics", "artifacts"} <= set(inspect(conn).get_table_names())
    check.dispose()


RUN_0001 = ("INSERT INTO runs (id, short_id, name, model, dataset, profile, seed, status, config, created_at) "
            "VALUES (:id, :short, 'old', 'qvae', 'synth3d', 'quick', 3, 'interrupted', :config, :created)")
METRIC_0001 = ("INSERT INTO metrics (run_id, name, value, value_text, step, split, protocol) "
               "VALUES (:id, 'dci_d', NULL, 'nan', 7, 'test', 'paper'), (:id, 'loss', 0.25, NULL, 7, NULL, NULL)")
ARTIFACT_0001 = ("INSERT INTO artifacts (run_id, kind, path, bytes, sha256, step, created_at) "
                 "VALUES (:id, 'checkpoint', '/ck', 5, :sha, 7, :created)")


def _fill_at_0001(url: str) -> str:
    assert migrate.upgrade(url, target="0001").after == "0001"
    rid = "0123456789abcdef0123456789abcdef"
    p = {"id": rid, "short": rid[:8], "config": '{"seed": 3}', "created": "2024-01-02 03:04:05.000000",
         "sha": "9" * 64}
    _exec(url, RUN_0001, METRIC_0001, ARTIFACT_0001, params=[p, p, p])
    return rid


def _check_rows_kept(reg: Registry, rid: str) -> None:
    run = reg.get_run("old")
    assert (run.id, run.model, run.seed, run.config, run.worker) == (rid, "qvae", 3, {"seed": 3}, None)
    assert run.created_at.isoformat().startswith("2024-01-02T03:04:05")
    values = {m.name: m.value for m in reg.metrics(rid)}
    assert math.isnan(values["dci_d"]) and values["loss"] == 0.25
    assert [(a.kind, a.bytes, a.step) for a in reg.artifacts(rid)] == [("checkpoint", 5, 7)]
    # the 0002 column works on the upgraded rows
    reg.transition(rid, "queued")
    assert reg.claim_next_queued("w").worker == "w"


def test_sqlite_behind_head_is_upgraded_automatically_after_a_backup(tmp_path):
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    rid = _fill_at_0001(url)
    reg = Registry(url)
    assert (reg.schema.before, reg.schema.after) == ("0001", HEAD)
    backup = reg.schema.backup
    assert backup is not None and backup.parent == tmp_path and backup.name.startswith("registry.db.backup-0001-")
    with sqlite3.connect(backup) as old:
        assert old.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]
        assert old.execute("SELECT id FROM runs").fetchall() == [(rid,)]
        assert "worker" not in {row[1] for row in old.execute("PRAGMA table_info(runs)")}
    _check_rows_kept(reg, rid)
    reg.close()
    assert Registry(url).schema.backup is None  # at head now: no second backup


@pytest.mark.postgres
def test_postgres_behind_head_needs_db_upgrade(pg_url, cli):
    rid = _fill_at_0001(pg_url)
    with pytest.raises(RegistryError, match=f"has schema revision 0001 but this fqvae needs {HEAD}") as err:
        Registry(pg_url)
    assert "fqvae db upgrade" in str(err.value)
    assert _exec(pg_url, "SELECT version_num FROM alembic_version")[0] == [("0001",)]
    res = cli("runs", "list", "--db", pg_url)
    assert res.exit_code == 1 and res.stderr.count("\n") == 1 and "fqvae db upgrade" in res.stderr
    assert "behind head" in cli("db", "current", "--db", pg_url).stdout
    res = cli("db", "upgrade", "--db", pg_url)
    assert res.exit_code == 0 and f"upgraded from revision 0001 to {HEAD}" in res.stdout
    with Registry(pg_url) as reg:
        _check_rows_kept(reg, rid)


def test_newer_schema_is_refused(db_url):
    Registry(db_url).close()
    _exec(db_url, "UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(RegistryError, match="revision 9999, newer than this fqvae"):
        Registry(db_url)
    with pytest.raises(RegistryError, match="newer"):
        migrate.upgrade(db_url)
    assert _exec(db_url, "SELECT version_num FROM alembic_version")[0] == [("9999",)]


def test_a_foreign_sqlite_database_is_left_alone(tmp_path, cli):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (x TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
    conn.close()
    before = path.read_bytes()
    res = cli("runs", "list", "--db", f"sqlite:///{path}")
    assert res.exit_code == 1 and res.stderr.count("\n") == 1
    assert "holds tables (notes) but no fqvae schema version" in res.stderr
    assert path.read_bytes() == before


def _valid_registry(path: Path) -> None:
    with Registry(f"sqlite:///{path}") as reg:
        run = reg.create_run(model="m", dataset="d", profile="p", seed=0, config={})
        reg.log_metrics(run.id, [(f"m{i}", float(i)) for i in range(2000)])


@pytest.mark.parametrize("damage", ["garbage", "truncated-header", "zeroed-pages"])
def test_a_corrupted_sqlite_file_gives_one_sentence_and_is_not_touched(tmp_path, cli, damage):
    path = tmp_path / "registry.db"
    if damage == "garbage":
        path.write_bytes(b"this is not a database, but it is somebody's file\n" * 200)
    else:
        _valid_registry(path)
        data = bytearray(path.read_bytes())
        if damage == "truncated-header":
            data[:16] = b"SQLite formut 3\x00"
        else:
            page = int.from_bytes(data[16:18], "big")
            data[page:] = bytes(len(data) - page)  # every page after the first (the schema) zeroed
        path.write_bytes(bytes(data))
    before = path.read_bytes()
    siblings = sorted(p.name for p in tmp_path.iterdir())
    url = f"sqlite:///{path}"
    for args in (("runs", "list", "--json"), ("runs", "show", "abcd"), ("db", "upgrade"), ("db", "current")):
        res = cli(*args, "--db", url)
        assert res.exit_code == 1, (args, res)
        assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: ") and res.stdout == ""
        assert str(path) in res.stderr and "Traceback" not in res.stderr
        assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm"))) == siblings


def test_an_unreachable_or_invalid_url_gives_one_sentence(cli, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    res = cli("runs", "list", "--db", f"postgresql+psycopg://fq:secret@127.0.0.1:{port}/registry")
    assert res.exit_code == 1 and res.stderr.count("\n") == 1
    assert "cannot reach the registry at postgresql+psycopg://fq:***@127.0.0.1" in res.stderr
    assert "secret" not in res.stderr
    res = cli("runs", "list", "--db", "not a url")
    assert res.exit_code == 1 and "is not a database URL" in res.stderr
    res = cli("runs", "list", "--db", "mysql+nodriver://x@localhost/db")
    assert res.exit_code == 1 and res.stderr.count("\n") == 1 and "no database driver" in res.stderr
    missing_dir = tmp_path / "file-not-dir"
    missing_dir.write_text("x")
    res = cli("runs", "list", "--db", f"sqlite:///{missing_dir / 'registry.db'}")
    assert res.exit_code == 1 and res.stderr.count("\n") == 1 and missing_dir.read_text() == "x"


def test_package_data_ships_every_migration_file():
    tomllib = pytest.importorskip("tomllib")
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["fqvae_cli"]
    files = [p.relative_to(ROOT).as_posix() for p in (ROOT / "migrations").rglob("*")
             if p.is_file() and "__pycache__" not in p.parts]
    assert "migrations/env.py" in files and "migrations/versions/0002_sweep_worker.py" in files
    for f in files:
        assert any(fnmatch.fnmatch(f, pat) for pat in patterns), f
    assert migrate.migrations_dir().joinpath("versions", "0001_initial.py").is_file()


def test_sqlite_connection_settings(tmp_path):
    path = tmp_path / "registry.db"
    with Registry(f"sqlite:///{path}") as reg:
        with reg._engine.connect() as conn:
            pragmas = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                       for name in ("journal_mode", "busy_timeout", "synchronous", "foreign_keys")}
    assert pragmas == {"journal_mode": "wal", "busy_timeout": 10_000, "synchronous": 2, "foreign_keys": 1}
    with sqlite3.connect(path) as plain:  # WAL is recorded in the file itself
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    plain.close()


@pytest.mark.slow
def test_the_wheel_contains_the_migrations(tmp_path):
    import shutil
    import subprocess
    import sys
    import zipfile

    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    # a copy of what the build reads, so it leaves nothing behind in the working tree
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("fqvae_cli", "migrations"):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=skip)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("fqvae-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"fqvae_cli/migrations/{p.relative_to(ROOT / 'migrations').as_posix()}"
               for p in (ROOT / "migrations").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert {"fqvae_cli/migrations/env.py", "fqvae_cli/migrations/versions/0001_initial.py"} <= shipped
    assert shipped <= names


def test_a_registry_at_0004_upgrades_to_provenance_and_keeps_its_rows(db_url):
    """Runs and metric rows written before 0005 keep their ids and values, read as 'not recorded'; the
    upgraded run takes starts and provenance-carrying rows like a new one."""
    from fqvae_cli import provenance as prov

    assert migrate.upgrade(db_url, target="0004").after == "0004"
    rid = "0123456789abcdef0123456789abcdef"
    p = {"id": rid, "short": rid[:8], "config": '{"seed": 3}', "created": "2024-01-02 03:04:05.000000",
         "sha": "9" * 64}
    _exec(db_url, RUN_0001, METRIC_0001, ARTIFACT_0001, params=[p, p, p])
    before = _exec(db_url, "SELECT id, name, value, value_text, step FROM metrics ORDER BY id")[0]
    assert migrate.upgrade(db_url).after == HEAD
    assert _exec(db_url, "SELECT id, name, value, value_text, step FROM metrics ORDER BY id")[0] == before
    with Registry(db_url) as reg:
        _check_rows_kept(reg, rid)  # ends with the run claimed: running again
        assert [m.provenance for m in reg.metrics(rid)] == [None, None] and reg.starts([rid]) == []
        record = prov.collect()
        reg.transition(rid, "running", provenance=record, step=7)
        reg.log_metrics(rid, [("loss", 0.2, 8, "train")], provenance=record)
        (start,) = reg.starts([rid])
        assert start.step == 7 and reg.provenance([start.provenance]) == {start.provenance: record}
        assert [m.provenance for m in reg.metrics(rid)] == [None, None, start.provenance]
        reg.delete_run(rid)  # the rebuilt metrics table still belongs to its run
        assert _exec(db_url, "SELECT count(*) FROM metrics")[0] == [(0,)]
