"""PostgreSQL for the registry tests: a throwaway server on loopback for the whole test session, and a
fresh database per test.

The server comes from $FQVAE_TEST_PG_URL (an admin URL of an existing server) if set, else from the
PostgreSQL binaries found under /usr/lib/postgresql/*/bin or on PATH: initdb into a temporary folder, trust
authentication, 127.0.0.1 on a free port, durability off (a test cluster need not survive a power cut).
PostgreSQL refuses to run as root, so as root it runs as the `postgres` user.

Without a server the PostgreSQL variants are skipped with the reason, except under CI=true, where they fail:
CI must never pass by skipping them.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest


def _no_server(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is required in CI: {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL server: {reason}")


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Cluster:
    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="fqvae-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise RuntimeError("running as root and there is no 'postgres' user to run the server") from exc
            self.user = "postgres"
            os.chmod(self.root, 0o700)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)

    def start(self) -> None:
        out = self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                        "--no-sync", "--no-instructions")
        if out.returncode:
            raise RuntimeError(f"initdb failed: {(out.stderr or out.stdout).strip()[-300:]}")
        options = (f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off -c max_connections=100")
        out = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options,
                        "-w", "-t", "60", "start")
        if out.returncode:
            log = (self.root / "server.log")
            tail = log.read_text()[-300:] if log.exists() else (out.stderr or out.stdout)[-300:]
            raise RuntimeError(f"the server did not start: {tail.strip()}")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=30)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture(scope="session")
def pg_server():
    """Admin URL (database `postgres`) of a PostgreSQL server for this test session."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _no_server("psycopg is not installed")
    external = os.environ.get("FQVAE_TEST_PG_URL")
    if external:
        yield external
        return
    bin_dir = _bin_dir()
    if bin_dir is None:
        _no_server("no initdb found (install Debian's `postgresql` package)")
    cluster = _Cluster(bin_dir)
    try:
        cluster.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        cluster.stop()
        _no_server(str(exc))
    try:
        yield cluster.admin_url
    finally:
        cluster.stop()


def _admin(url: str, statement: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    with psycopg.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password,
                         dbname=u.database or "postgres", autocommit=True, connect_timeout=10) as conn:
        conn.execute(statement)


@pytest.fixture
def pg_url(pg_server):
    """URL of a new, empty PostgreSQL database, dropped after the test."""
    from sqlalchemy.engine import make_url

    name = f"fqvae_test_{uuid.uuid4().hex[:12]}"
    _admin(pg_server, f'CREATE DATABASE "{name}"')
    url = make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        _admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """A fresh, empty registry URL on each engine: a SQLite file under tmp_path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return request.getfixturevalue("pg_url")
