"""`fqvae runs ...` and `fqvae db ...` through the real entry point, on the per-test workspace registry."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from fqvae_cli.registry.schema import HEAD
from fqvae_cli.registry.store import Registry, run_dir


@pytest.fixture
def filled(workspace):
    """Two finished runs with metrics and artifacts, one queued run; in the default workspace registry."""
    reg = Registry()
    a = reg.create_run(model="factorqvae", dataset="synth3d", profile="quick", seed=0, name="fq-0",
                       config={"model": {"name": "factorqvae", "gamma": 0.5}})
    b = reg.create_run(model="qlae", dataset="synth3d", profile="quick", seed=1, config={"model": {"name": "qlae"}})
    q = reg.create_run(model="qlae", dataset="shapes3d", profile="paper", seed=0, config={}, status="queued")
    reg.log_metrics(a.id, [("loss", 2.0, 10), ("loss", 1.5, 20), ("dci_d", 0.9, None, "test", "paper"),
                           ("infomec_m", math.nan, None, "test", "paper")])
    reg.log_metrics(b.id, [("dci_d", 0.4, None, "test", "paper"), ("dci_d", 0.5, None, "test", "paper")])
    folder = run_dir(a)
    folder.mkdir(parents=True)
    (folder / "ckpt.safetensors").write_bytes(b"weights")
    reg.add_artifact(a.id, kind="checkpoint", path=folder / "ckpt.safetensors", bytes=7, sha256="1" * 64, step=20)
    outside = workspace / "shared-figure.png"
    outside.write_bytes(b"png")
    reg.add_artifact(a.id, kind="figure", path=outside, bytes=3, sha256="2" * 64)
    reg.transition(a.id, "finished")
    reg.transition(b.id, "finished")
    reg.close()
    return a, b, q


def test_list_json_on_a_fresh_workspace_creates_the_registry(cli, workspace):
    res = cli("runs", "list", "--json")
    assert (res.exit_code, json.loads(res.stdout)) == (0, [])
    assert (workspace / "registry.db").is_file()


def test_list_filters_and_formats(cli, filled):
    a, b, q = filled
    res = cli("runs", "list", "--json")
    assert res.exit_code == 0
    rows = json.loads(res.stdout)
    assert [r["id"] for r in rows] == [a.id, b.id, q.id]
    assert rows[0]["config"] == {"model": {"name": "factorqvae", "gamma": 0.5}}
    assert rows[0]["status"] == "finished" and rows[0]["created_at"].endswith("+00:00")
    assert [r["id"] for r in json.loads(cli("runs", "list", "--json", "--model", "qlae").stdout)] == [b.id, q.id]
    assert [r["id"] for r in json.loads(cli("runs", "list", "--json", "--dataset", "shapes3d",
                                            "--status", "queued", "--profile", "paper").stdout)] == [q.id]
    table = cli("runs", "list")
    assert table.exit_code == 0
    assert "3 run(s)" in table.stdout and all(r.short_id in table.stdout for r in filled)
    assert "fq-0" in table.stdout
    empty = cli("runs", "list", "--model", "nothing")
    assert (empty.exit_code, empty.stdout) == (0, "") and "No runs match" in empty.stderr
    bad = cli("runs", "list", "--status", "done")
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1 and "unknown run status 'done'" in bad.stderr


def test_show_gives_config_metrics_and_artifacts(cli, filled):
    a, _, _ = filled
    res = cli("runs", "show", "fq-0", "--json")
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    assert doc["run"]["id"] == a.id and doc["run"]["config"]["model"]["gamma"] == 0.5
    latest = {(m["protocol"], m["name"]): m["value"] for m in doc["metrics"]}
    assert latest[(None, "loss")] == 1.5 and latest[("paper", "dci_d")] == 0.9
    assert math.isnan(latest[("paper", "infomec_m")])
    assert [(x["kind"], x["bytes"], x["step"]) for x in doc["artifacts"]] == [
        ("checkpoint", 7, 20), ("figure", 3, None)]
    history = json.loads(cli("runs", "show", a.short_id, "--json", "--history").stdout)
    assert [m["value"] for m in history["metrics"] if m["name"] == "loss"] == [2.0, 1.5]
    human = cli("runs", "show", a.id[:6])
    assert human.exit_code == 0
    for text in (a.id, "gamma", "dci_d", "0.9", "nan", "checkpoint", "ckpt.safetensors"):
        assert text in human.stdout


def test_unknown_run_lists_the_closest_ids(cli, filled):
    a, _, _ = filled
    res = cli("runs", "show", "fq-1")
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "no run 'fq-1'" in res.stderr and "closest: fq-0" in res.stderr
    typo = a.short_id[:7] + ("0" if a.short_id[7] != "0" else "1")
    assert a.short_id in cli("runs", "show", typo).stderr


def test_delete_needs_yes_then_removes_rows_and_folder(cli, filled, workspace):
    a, b, _ = filled
    folder = run_dir(a)
    refused = cli("runs", "delete", a.short_id)
    assert refused.exit_code == 2 and "without --yes" in refused.stderr
    assert folder.is_dir() and Registry().get_run(a.id).id == a.id
    res = cli("runs", "delete", a.short_id, "--yes")
    assert res.exit_code == 0, res.stderr
    assert not folder.exists()
    assert (workspace / "shared-figure.png").read_bytes() == b"png"  # outside the run folder: kept
    assert "left" in res.stderr and "shared-figure.png" in res.stderr
    reg = Registry()
    assert [r.id for r in reg.find_runs()] == [b.id, filled[2].id]
    assert reg.metrics(a.id) == [] and reg.artifacts(a.id) == []
    assert [m.value for m in reg.metrics(b.id)] == [0.4, 0.5]
    running = reg.create_run(model="m", dataset="d", profile="p", seed=0, config={})
    reg.close()
    res = cli("runs", "delete", running.short_id, "--yes")
    assert res.exit_code == 2 and "is running" in res.stderr
    assert cli("runs", "delete", running.short_id, "--yes", "--force").exit_code == 0


def test_export_csv_and_json(cli, filled, tmp_path):
    a, b, q = filled
    res = cli("runs", "export", "--format", "csv")
    assert res.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [r["id"] for r in rows] == [a.id, b.id, q.id]
    assert rows[0]["loss"] == "1.5" and rows[0]["paper:dci_d@test"] == "0.9"
    assert rows[0]["paper:infomec_m@test"] == "nan" and rows[0]["status"] == "finished"
    assert rows[1]["paper:dci_d@test"] == "0.5" and rows[1]["loss"] == "" and rows[1]["name"] == ""
    assert rows[2]["paper:dci_d@test"] == ""
    out = tmp_path / "runs.json"
    res = cli("runs", "export", "--format", "json", "--out", out, "--model", "qlae")
    assert res.exit_code == 0 and res.stdout == ""
    doc = json.loads(out.read_text())
    assert [(r["id"], r["metrics"]) for r in doc] == [(b.id, {"paper:dci_d@test": 0.5}), (q.id, {})]
    bad = cli("runs", "export", "--format", "xlsx")
    assert bad.exit_code == 2 and "unknown export format 'xlsx'" in bad.stderr


def test_db_commands(cli, workspace, tmp_path, monkeypatch):
    path = cli("db", "path")
    assert path.exit_code == 0
    assert path.stdout.splitlines() == [f"sqlite:///{workspace / 'registry.db'}",
                                        f"file: {workspace / 'registry.db'} (not created yet)"]
    assert "no schema yet" in cli("db", "current").stdout
    assert not (workspace / "registry.db").exists()  # looking does not create
    assert cli("db", "upgrade").stdout.endswith(f"created at revision {HEAD}\n")
    assert cli("db", "upgrade").stdout.endswith(f"already at revision {HEAD}\n")
    assert f"revision {HEAD} (head, up to date)" in cli("db", "current").stdout
    other = tmp_path / "elsewhere.db"
    monkeypatch.setenv("FQVAE_DB", f"sqlite:///{other}")
    assert cli("db", "path").stdout.startswith(f"sqlite:///{other}\n")
    assert json.loads(cli("runs", "list", "--json").stdout) == [] and other.is_file()
    flag = tmp_path / "flag.db"
    assert cli("runs", "list", "--json", "--db", f"sqlite:///{flag}").exit_code == 0 and flag.is_file()
