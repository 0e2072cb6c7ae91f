"""Shared fixtures: every test gets its own workspace (registry, runs, data) under tmp_path, and the
CLI is driven in-process through the real entry point (`fqvae_cli.cli.main.main`), so exit codes and
the one-sentence error handling are what a user gets.

Two tiers: `make test` runs every test not marked `full`; `make test-all` runs them all (both in one
process per core, pytest -n). A test is marked `full` here, at collection, by what it does:
- it uses a fixture that starts a server (PostgreSQL: `pg_server`, `pg_url`, the `postgresql` side of
  `db_url`), or `spawns` (it starts processes through fqvae itself: workers, executors, joblib pools);
- it, a fixture it uses, or a function of the test code it calls (followed through tests/*.py) starts a
  process: a Python child, a process pool, headless Chromium (`subprocess`, `multiprocessing`, `fork`);
- it is marked `postgres` or `slow` (torch.compile).
While the tests run, every process a test starts is seen (`_process_watch`): one outside `full` is named
at the end of the session.

The default tier trains and evaluates one workspace per session (`trained_home`, shared by the -n
processes) that the evaluate, report and bundle tests read or copy, and replays into every fresh SQLite
registry the schema that the real migrations built once (`_registry_template`)."""

from __future__ import annotations

import inspect
import os
import re
import sqlite3
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def workspace(tmp_path, monkeypatch):
    home = tmp_path / "fqvae-home"
    monkeypatch.setenv("FQVAE_HOME", str(home))
    monkeypatch.delenv("FQVAE_DATA", raising=False)
    monkeypatch.delenv("FQVAE_DB", raising=False)
    monkeypatch.setenv("FQVAE_PLAIN_PROGRESS", "1")
    return home


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys):
    """cli('data', 'list', '--json') -> CliResult(exit_code, stdout, stderr)."""
    from fqvae_cli.cli.main import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def shared(tmp_path_factory, name: str, build):
    """build(folder) once per test session, in a folder of its own, whatever the number of processes
    running the tests (pytest -n): the first process builds it under a lock, the others read what it
    returned (pickled beside it)."""
    import pickle

    from filelock import FileLock

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build(tmp_path_factory.mktemp(name))
    root = tmp_path_factory.getbasetemp().parent  # shared by the processes of one session
    result = root / f"{name}.pickle"
    with FileLock(str(root / f"{name}.lock")):
        if not result.exists():  # a failed build leaves no result: the next process tries again afresh
            value = build(Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root)))
            result.write_bytes(pickle.dumps(value))
            return value
    return pickle.loads(result.read_bytes())


@pytest.fixture(scope="session")
def small_data_root(tmp_path_factory):
    """A data root holding the small synth3d grid, rendered once per test session."""
    from helpers import prepare_small_synth

    def build(root):
        prepare_small_synth(root)
        return root

    return shared(tmp_path_factory, "data", build)


@pytest.fixture
def small_data(small_data_root, monkeypatch):
    """Point this test's workspace at the shared small synth3d dataset."""
    monkeypatch.setenv("FQVAE_DATA", str(small_data_root))
    return small_data_root


@pytest.fixture(scope="session")
def tiny_protocol_file(tmp_path_factory):
    from helpers import write_tiny_protocol

    return shared(tmp_path_factory, "protocol", lambda folder: write_tiny_protocol(folder / "experiments.yaml"))


@pytest.fixture
def tiny_protocol(tiny_protocol_file, monkeypatch):
    """experiments.yaml plus a `tiny` metric protocol (300/150 DCI, 300 InfoMEC samples)."""
    monkeypatch.setenv("FQVAE_EXPERIMENTS", str(tiny_protocol_file))
    return "tiny"


@pytest.fixture(scope="session")
def trained_home(small_data_root, tiny_protocol_file, tmp_path_factory):
    """One workspace trained and evaluated once per session (helpers.build_trained_home says what it
    holds). It is read only: a test that changes it works on a copy (helpers.copy_trained_home)."""
    from helpers import build_trained_home

    def build(folder):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("FQVAE_DATA", str(small_data_root))
            mp.setenv("FQVAE_EXPERIMENTS", str(tiny_protocol_file))
            mp.setenv("FQVAE_PLAIN_PROGRESS", "1")
            mp.delenv("FQVAE_DB", raising=False)
            return build_trained_home(folder)

    return shared(tmp_path_factory, "trained", build)


def pytest_configure(config):
    # One thread per test process (torch, BLAS): `make test` runs one process per core, and the tiny
    # models gain nothing from more (threads waiting on a busy core only burn its time).
    os.environ.setdefault("OMP_NUM_THREADS", "1")


# PostgreSQL server and per-engine registry URLs for the registry tests (pg_server, pg_url, db_url).
from pg import db_url, pg_server, pg_url  # noqa: E402,F401

# ---- a registry schema built once per session --------------------------------------------------------

_TEMPLATE: dict = {}


def _template_schema(real_upgrade) -> tuple[list[str], dict[str, list[tuple]]]:
    """The DDL and rows of a SQLite registry created at head by the real alembic migrations (once)."""
    if not _TEMPLATE:
        from fqvae_cli.registry import migrate

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "template.db"
            url = f"sqlite:///{path}"
            engine = migrate.make_engine(url)
            _TEMPLATE["building"] = True
            try:
                migrate.ensure_schema(engine, url)
            finally:
                _TEMPLATE.pop("building")
                engine.dispose()
            con = sqlite3.connect(path)
            try:
                master = con.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
                                     "AND name NOT LIKE 'sqlite_%' ORDER BY rowid").fetchall()
                rows = {name: con.execute(f'SELECT * FROM "{name}"').fetchall()
                        for kind, name, _ in master if kind == "table"}
            finally:
                con.close()
        _TEMPLATE.update(ddl=[sql for _, _, sql in master], rows=rows)
    return _TEMPLATE["ddl"], _TEMPLATE["rows"]


@pytest.fixture(scope="session", autouse=True)
def _registry_template():
    """A fresh SQLite registry gets the schema of one built by the real migrations at the start of the
    session (five revisions, four of them SQLite table rebuilds) instead of replaying them each time.
    Upgrades from an older revision, PostgreSQL, and child processes run the real migrations."""
    from alembic import command

    from fqvae_cli.registry import migrate
    from fqvae_cli.registry.schema import HEAD

    real = command.upgrade

    def upgrade(config, revision, *args, **kwargs):
        conn = config.attributes.get("connection")
        if (conn is None or conn.dialect.name != "sqlite" or revision not in (HEAD, "head")
                or _TEMPLATE.get("building") or args or kwargs):
            return real(config, revision, *args, **kwargs)
        state = migrate.read_state(conn)
        if state.revision is not None or state.tables:
            return real(config, revision, *args, **kwargs)
        ddl, rows = _template_schema(real)
        for statement in ddl:
            conn.exec_driver_sql(statement)
        for name, values in rows.items():
            if values:
                marks = ", ".join("?" * len(values[0]))
                conn.exec_driver_sql(f'INSERT INTO "{name}" VALUES ({marks})', values)
        return None

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(command, "upgrade", upgrade)
        yield


# ---- tiers ---------------------------------------------------------------------------------------------

# Fixtures that start a server (PostgreSQL) or say that the test starts processes through fqvae itself.
FULL_FIXTURES = {"pg_server", "pg_url", "spawns"}
# What starts another process, as the test code spells it.
_STARTS = re.compile(r"\bsubprocess\.(run|Popen|call|check_call|check_output)\b|\bPopen\(|\.Process\(|"
                     r"\bos\.fork\(|ProcessPoolExecutor|\bmultiprocessing\.Pool\(")
_NAME = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")
_STARTS_CACHE: dict = {}


def _in_tests(obj) -> bool:
    try:
        return Path(inspect.getsourcefile(obj)).resolve().is_relative_to(TESTS)
    except (TypeError, OSError):
        return False


def _starts_a_process(func, seen: set | None = None) -> bool:
    """Whether `func`, or a function of the test code it names (followed through tests/), starts a
    process."""
    func = inspect.unwrap(func)
    key = getattr(func, "__code__", func)
    if key in _STARTS_CACHE:
        return _STARTS_CACHE[key]
    seen = set() if seen is None else seen
    if key in seen:
        return False
    seen.add(key)
    try:
        source = inspect.getsource(func)
    except (TypeError, OSError):
        return False
    found = bool(_STARTS.search(source))
    if not found:
        scope = getattr(func, "__globals__", None) or getattr(sys.modules.get(func.__module__), "__dict__", {})
        for name in set(_NAME.findall(source)):
            target = scope.get(name)
            if (inspect.isfunction(target) or inspect.isclass(target)) and target is not func and _in_tests(target):
                members = [target] if inspect.isfunction(target) else [
                    m for m in vars(target).values() if inspect.isfunction(m)]
                if any(_starts_a_process(m, seen) for m in members):
                    found = True
                    break
    _STARTS_CACHE[key] = found
    return found


def _is_full(item) -> bool:
    if item.get_closest_marker("postgres") or item.get_closest_marker("slow"):
        return True
    names = set(getattr(item, "fixturenames", ()))
    if names & FULL_FIXTURES:
        return True
    func = getattr(item, "function", None)
    if func is not None and _starts_a_process(func):
        return True
    info = getattr(item, "_fixtureinfo", None)
    for name in names:
        for fixturedef in (info.name2fixturedefs.get(name, ()) if info else ()):
            if _in_tests(fixturedef.func) and _starts_a_process(fixturedef.func) and \
                    fixturedef.func.__name__ not in _SET_UP_ONCE:
                return True
    return False


# Fixtures not read for what they start: set-up shared by the whole session (built in this process), and
# the watch on processes below.
_SET_UP_ONCE = {"small_data_root", "trained_home", "_registry_template", "_process_watch", "spawns"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _is_full(item):
            item.add_marker(pytest.mark.full)


# What the tests start, seen while they run: fqvae starts processes the test code does not spell out
# (`reproduce` and `sweep --executor local` start workers). A test outside `full` that starts one is named
# at the end of the session; it should ask for `spawns`. Not counted: joblib's worker pool (metrics with
# --jobs), shared by the whole session, and `git`, which the provenance record reads.
_CURRENT: list = []
_SESSION_END: list = []  # the last test's teardown, where the session's own fixtures end too (PostgreSQL stops)
_STARTED: dict[str, list[tuple[str, object]]] = {}


def _record(what: str, process: object) -> None:
    if _CURRENT and not _SESSION_END:
        _STARTED.setdefault(_CURRENT[-1].nodeid, []).append((what, process))


def _running(process) -> bool:
    try:
        return process.poll() is None if hasattr(process, "poll") else process.is_alive()
    except (AssertionError, ValueError, OSError):  # not started, or started by another process
        return False


@pytest.fixture(scope="session", autouse=True)
def _process_watch():
    import multiprocessing.process
    import subprocess

    popen_init, start = subprocess.Popen.__init__, multiprocessing.process.BaseProcess.start

    def watched_popen(self, args, *rest, **kwargs):
        if not (isinstance(args, (list, tuple)) and args and str(args[0]) == "git"):  # provenance reads git
            _record(" ".join(map(str, args)) if isinstance(args, (list, tuple)) else str(args), self)
        popen_init(self, args, *rest, **kwargs)

    def watched_start(self):
        if not type(self).__module__.startswith(("joblib", "loky")):
            _record(f"{type(self).__name__} {getattr(self, '_target', None)}", self)
        start(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(subprocess.Popen, "__init__", watched_popen)
        mp.setattr(multiprocessing.process.BaseProcess, "start", watched_start)
        yield


@pytest.fixture
def spawns():
    """The test starts processes through fqvae (workers, executors): it runs in the `full` tier, and any
    process it started and left running is stopped at its end, which fails it."""
    nodeid = _CURRENT[-1].nodeid if _CURRENT else ""
    yield
    left = [(what, p) for what, p in _STARTED.get(nodeid, []) if _running(p)]
    for _what, p in left:
        p.kill()
    assert not left, f"processes left running: {[what[:120] for what, _ in left]}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _CURRENT.append(item)
    try:
        yield
    finally:
        _CURRENT.pop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    if nextitem is None:
        _SESSION_END.append(True)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    started = _STARTED.get(item.nodeid)
    if call.when == "teardown" and started and not item.get_closest_marker("full"):
        outcome.get_result().user_properties.append(("started processes", [what[:100] for what, _ in started]))


_UNMARKED: dict[str, list[str]] = {}


def pytest_runtest_logreport(report):
    # in the process that reports (with -n, the reports of every worker come here)
    for key, value in getattr(report, "user_properties", ()):
        if key == "started processes":
            _UNMARKED[report.nodeid] = value


def pytest_terminal_summary(terminalreporter):
    if _UNMARKED:
        terminalreporter.section("tests outside `full` that started processes (ask for the `spawns` fixture)")
        for nodeid, what in sorted(_UNMARKED.items()):
            terminalreporter.write_line(f"{nodeid}: {len(what)}, e.g. {what[0]}")


@pytest.fixture
def server():
    """A file server on 127.0.0.1 (tests/http_server.py) for the download tests."""
    from http_server import FileServer

    with FileServer() as srv:
        yield srv


@pytest.fixture
def neighbour(workspace):
    """A local run with a metric row and a file, so 'nothing changed' (a refused import) has something to keep."""
    import hashlib

    from fqvae_cli.registry.lifecycle import FINISHED
    from fqvae_cli.registry.store import Registry

    with Registry() as reg:
        run = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=3, config={}, name="local")
        reg.log_metrics(run.id, [("dci_d", 0.25, None, "eval", "tiny")])
        path = workspace / "runs" / run.id / "figures" / "a.png"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"png")
        reg.add_artifact(run.id, kind="figure", path=path, bytes=3, sha256=hashlib.sha256(b"png").hexdigest())
        reg.transition(run.id, FINISHED)
    return path
