"""Weights & Biases in offline mode, with no network: a run's config, history by iteration, snapshot images,
evaluation rows and exit, read back from the transaction log W&B writes (its own protobuf records), and
`runs sync` reopening the same W&B run."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path

import pytest
from helpers import SNAPSHOTS, TINY

pytest.importorskip("wandb", reason="the wandb extra is not installed (pip install 'fqvae[wandb]')")

from fqvae_cli.files import sha256_file  # noqa: E402


def _registry():
    from fqvae_cli.registry.store import Registry

    return Registry()


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch, spawns):
    """W&B offline, every folder it uses under tmp_path, any address it might try a dead loopback port,
    and any connection this process opens to a non-loopback address refused and noted. W&B runs a service
    process (wandb-core): the test is in the full tier, and the service is stopped at its end."""
    for var, sub in (("WANDB_DIR", "wandb"), ("WANDB_CONFIG_DIR", "wandb-config"), ("WANDB_CACHE_DIR", "wandb-cache"),
                     ("WANDB_DATA_DIR", "wandb-data"), ("WANDB_ARTIFACT_DIR", "wandb-artifacts")):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_PROJECT", "fqvae-test")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("WANDB_API_KEY", "WANDB_ENTITY", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    outside: list = []
    connect = socket.socket.connect

    def guarded(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            outside.append(address)
            raise OSError(f"test: no network ({address})")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield tmp_path / "wandb"
    import wandb

    wandb.teardown()  # stops wandb-core, which would otherwise outlive the test
    assert outside == []


def _records(path: Path) -> list:
    """The records of a W&B transaction log (`run-<id>.wandb`): a 7-byte header (':W&B', magic, version),
    then LevelDB-log blocks of 32 KiB whose records (checksum, length, type: full/first/middle/last) carry
    W&B's own protobuf `Record` messages."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    out, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            break
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 2):
            pending = chunk
        else:
            pending += chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
    return out


def _read(run_folder: Path) -> dict:
    """What a W&B offline run folder holds: run id, project, config, history by step, summary, files, exit."""
    (log,) = run_folder.glob("run-*.wandb")
    seen = {"config": {}, "history": {}, "summary": {}, "files": [], "exit": None}
    for r in _records(log):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            seen["run_id"], seen["project"] = r.run.run_id, r.run.project
            seen["tags"] = list(r.run.tags)
            seen["config"].update({u.key: json.loads(u.value_json) for u in r.run.config.update})
        elif kind == "history":
            row = {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item}
            seen["history"].setdefault(row["_step"], {}).update(row)
        elif kind == "summary":
            seen["summary"].update({"/".join(u.nested_key) or u.key: json.loads(u.value_json)
                                    for u in r.summary.update})
        elif kind == "files":
            seen["files"] += [f.path for f in r.files.files]
        elif kind == "exit":
            seen["exit"] = r.exit.exit_code
    return seen


def test_an_offline_run_reads_back_from_its_own_records(cli, small_data, offline):
    res = cli("train", "--model", "factorqvae", *TINY, *SNAPSHOTS, "--set", "train.trackers=[wandb]", "--name", "w")
    assert res.exit_code == 0, res.stderr
    assert "warning" not in res.stderr
    reg = _registry()
    run = reg.get_run("w")
    (folder,) = (offline / "wandb").glob(f"offline-run-*-{run.id}")
    seen = _read(folder)
    assert (seen["run_id"], seen["project"], seen["exit"]) == (run.id, "fqvae-test", 0)
    assert sorted(seen["tags"]) == ["factorqvae", "quick", "synth3d"]
    assert seen["config"]["train"]["steps"] == 6 and seen["config"]["seed"] == 0
    history = seen["history"]
    for name in ("loss/total", "loss/disc", "lr", "temperature", "perplexity", "dead_codes/z3"):
        recorded = {m.step: m.value for m in reg.metrics(run.id, name=name)}
        assert sorted(recorded) == [2, 4, 6]
        assert {s: row[name] for s, row in history.items() if name in row} == pytest.approx(recorded, rel=1e-12)
    snaps = {a.step: a.sha256 for a in reg.artifacts(run.id, kind="snapshot")}
    assert {s: row["snapshot/sha256"] for s, row in history.items() if "snapshot/sha256" in row} == snaps
    assert len([f for f in seen["files"] if f.startswith("media/images/snapshot_")]) == 6
    final = reg.metrics(run.id, protocol="final", name="mse")[0].value
    assert seen["summary"]["final/mse"] == pytest.approx(final, rel=1e-12)
    assert seen["summary"]["fqvae_status"] == "finished"
    shown = cli("runs", "show", "w")
    assert f"tracker wandb run {run.id} in {folder}" in shown.stdout

    # A sync reopens the same W&B run (its id is the fqvae run's): one run there, one link here.
    res = cli("runs", "sync", "w", "--to", "wandb")
    assert res.exit_code == 0, res.stderr
    folders = sorted((offline / "wandb").glob(f"offline-run-*-{run.id}"))
    synced = _read(folders[-1]) if len(folders) > 1 else _read(folders[0])
    assert synced["run_id"] == run.id and synced["exit"] == 0
    assert {s: row["loss/total"] for s, row in synced["history"].items() if "loss/total" in row} == pytest.approx(
        {m.step: m.value for m in reg.metrics(run.id, name="loss/total")}, rel=1e-12)
    assert len(reg.artifacts(run.id, kind="tracker")) == 1
    link = json.loads(Path(reg.artifacts(run.id, kind="tracker")[0].path).read_text())
    assert link["run_id"] == run.id and link["url"] is None
    assert sha256_file(reg.artifacts(run.id, kind="tracker")[0].path) == reg.artifacts(run.id, kind="tracker")[0].sha256
