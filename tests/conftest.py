"""Shared fixtures: every test gets its own workspace (registry, runs, data) under tmp_path, and the
CLI is driven in-process through the real entry point (`fqvae_cli.cli.main.main`), so exit codes and
the one-sentence error handling are what a user gets."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest


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


@pytest.fixture(scope="session")
def small_data_root(tmp_path_factory):
    """A data root holding the small synth3d grid, rendered once per test session."""
    from helpers import prepare_small_synth

    root = tmp_path_factory.mktemp("data")
    prepare_small_synth(root)
    return root


@pytest.fixture
def small_data(small_data_root, monkeypatch):
    """Point this test's workspace at the shared small synth3d dataset."""
    monkeypatch.setenv("FQVAE_DATA", str(small_data_root))
    return small_data_root


@pytest.fixture
def tiny_protocol(tmp_path, monkeypatch):
    """experiments.yaml plus a `tiny` metric protocol (300/150 DCI, 300 InfoMEC samples)."""
    from helpers import write_tiny_protocol

    monkeypatch.setenv("FQVAE_EXPERIMENTS", str(write_tiny_protocol(tmp_path / "experiments.yaml")))
    return "tiny"


def pytest_configure(config):
    # Two cores are shared by torch, joblib and BLAS; keep each test process from oversubscribing.
    os.environ.setdefault("OMP_NUM_THREADS", "2")


# PostgreSQL server and per-engine registry URLs for the registry tests (pg_server, pg_url, db_url).
from pg import db_url, pg_server, pg_url  # noqa: E402,F401
