"""`fqvae runs import` against every hostile bundle of tests/hostile_bundles.py: each is refused with one
sentence, and the registry rows and workspace files are exactly as they were. Also: only the files the
bundle format defines are imported, free space is checked first, and the hidden folders an import killed
with SIGKILL leaves behind are removed by the next one."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections import namedtuple
from pathlib import Path

import pytest
from hostile_bundles import HOSTILE, honest_bundle, members, run_id

from fqvae_cli.registry.store import Registry


@pytest.fixture(scope="module")
def honest(tmp_path_factory) -> Path:
    return honest_bundle(tmp_path_factory.mktemp("honest"))


def _state(home: Path) -> dict:
    with Registry() as reg:
        rows = [(r.to_json(), [m.to_json() for m in reg.metrics(r.id)], [a.to_json() for a in reg.artifacts(r.id)])
                for r in reg.find_runs()]
    files = {str(p.relative_to(home)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
             for p in sorted(home.rglob("*")) if not p.name.startswith("registry.db")}
    return {"rows": rows, "files": files}


def test_the_honest_bundle_imports(cli, honest, workspace):
    manifest, files = members(honest)
    res = cli("runs", "import", honest)
    assert res.exit_code == 0, res.stderr
    folder = workspace / "runs" / run_id(manifest)
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "checkpoints/step_00000004.safetensors", "checkpoints/step_00000004.state.pt", "config.json",
        "matrices/tiny/importance_step4.npy", "snapshots/step_00000004.png"]
    for name, data in files.items():
        assert (workspace / name).read_bytes() == data


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_bundles_are_refused_writing_nothing(cli, honest, neighbour, workspace, tmp_path, case):
    build, needle = HOSTILE[case]
    bundle = build(honest, tmp_path / "hostile.tar")
    assert bundle.stat().st_size < 1 << 20  # whatever it declares, the bundle itself is small
    before = _state(workspace)
    res = cli("runs", "import", bundle)
    assert res.exit_code != 0
    assert needle in res.stderr and "nothing was imported" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith("error: "), res.stderr
    assert "unexpected" not in res.stderr and "fingerprint_text" not in res.stderr
    assert _state(workspace) == before
    assert not Path("/tmp/fqvae-hostile-pwned").exists()


def test_free_space_is_checked_against_the_declared_sizes(cli, honest, neighbour, workspace, monkeypatch):
    manifest, _ = members(honest)
    need = sum(spec["bytes"] for spec in manifest["files"].values())
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 ** 9, 10 ** 9 - need // 2, need // 2))
    before = _state(workspace)
    res = cli("runs", "import", honest)
    assert res.exit_code == 1, res.stderr
    assert f"its files need {need:,} bytes but only {need // 2:,} are free under {workspace / 'runs'}" in res.stderr
    assert _state(workspace) == before


def test_an_import_killed_midway_is_cleaned_up_by_the_next(cli, honest, workspace):
    """A SIGKILLed import leaves its hidden staging folder; the next import removes those whose process is
    gone (or, from elsewhere or an older fqvae, that are a day old), and keeps one still being written."""
    runs = workspace / "runs"
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = os.uname().nodename
    legacy = runs / f".{'a' * 32}.import-0123abcd"  # named as fqvae named them before it recorded its owner
    killed = runs / f".{'b' * 32}.import-{dead.pid}-0123abcd"
    busy = runs / f".{'c' * 32}.import-{os.getpid()}-0123abcd"
    fresh_legacy = runs / f".{'d' * 32}.import-4567abcd"
    for folder, owner in ((legacy, None), (killed, f"{host}:{dead.pid}"), (busy, f"{host}:{os.getpid()}"),
                          (fresh_legacy, None)):
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "checkpoints" / "w.safetensors").write_bytes(b"x" * 1000)
        if owner:
            (folder / ".import-owner").write_text(owner)
    day_ago = time.time() - 25 * 3600
    os.utime(legacy, (day_ago, day_ago))
    res = cli("runs", "import", honest)
    assert res.exit_code == 0, res.stderr
    assert "removed 2 unfinished import folder(s) left by an import that was stopped" in res.stderr, res.stderr
    assert not legacy.exists() and not killed.exists()
    assert busy.is_dir() and fresh_legacy.is_dir()
    manifest, _ = members(honest)
    assert sorted(p.name for p in runs.iterdir()) == sorted([run_id(manifest), busy.name, fresh_legacy.name])


def test_a_dataset_mismatch_names_the_field_that_differs(cli, honest, small_data, workspace, tmp_path):
    from hostile_bundles import rebuild

    from fqvae_cli.data.identity import dataset_fingerprint
    from fqvae_cli.data.store import PreparedDataset, dataset_dir

    here = dataset_fingerprint(PreparedDataset(dataset_dir("synth3d")))
    version = here["source"]["renderer_version"]

    def older_renderer(manifest: dict, files: dict) -> None:
        recorded = json.loads(json.dumps(here))
        recorded["source"]["renderer_version"] = version - 1
        manifest["runs"][0]["run"]["dataset_fingerprint"] = recorded

    res = cli("runs", "import", rebuild(honest, tmp_path / "older.tar", older_renderer))
    assert res.exit_code == 1
    assert (f"but the dataset prepared here at {dataset_dir('synth3d')} differs: source.renderer_version is "
            f"{version} here, {version - 1} in the run's record; nothing was imported.") in res.stderr, res.stderr


def test_export_leaves_out_what_import_would_refuse(cli, workspace, tmp_path):
    with Registry() as reg:
        run = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, config={}, name="odd")
        folder = workspace / "runs" / run.id
        folder.mkdir(parents=True)
        for kind, name in (("figure", "a.png"), ("tensorboard", "events.out")):
            (folder / name).write_bytes(b"\x89PNG\r\n\x1a\n")
            reg.add_artifact(run.id, kind=kind, path=folder / name, bytes=8,
                             sha256=hashlib.sha256(b"\x89PNG\r\n\x1a\n").hexdigest())
        reg.transition(run.id, "finished")
    res = cli("runs", "export", run.short_id, "--bundle", tmp_path / "b.tar")
    assert res.exit_code == 0, res.stderr
    assert (f"note: left out {folder / 'events.out'}: artifact kind 'tensorboard' is not one of checkpoint, "
            "checkpoint_state, matrix_importance, matrix_nmi, snapshot, figure.") in res.stderr
    manifest, files = members(tmp_path / "b.tar")
    assert sorted(files) == [f"runs/{run.id}/a.png"]
