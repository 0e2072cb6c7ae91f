"""Run bundles: `fqvae runs export RUN --bundle` in one workspace, `fqvae runs import` in another.

One tiny run is trained, evaluated (tiny protocol) and drawn once per session in a workspace of its own,
then exported; each test imports into its own fresh workspace (SQLite, or PostgreSQL through `db_url`).
Every refused bundle is checked to leave the registry rows and the workspace files exactly as they were."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from fqvae_cli.registry.schema import HEAD
from fqvae_cli.registry.store import Registry

TABLE_SET = ["--set", "train.steps=6", "--set", "train.batch_size=8", "--set", "model.disc_width=32"]


@pytest.fixture
def source(small_data, tiny_protocol, trained_home) -> dict:
    """A tiny finished FactorQVAE in a workspace of its own, evaluated and drawn (one figure in its folder,
    one outside it), exported as `bundle` (last checkpoint) and `all` (--all): the session's trained
    workspace (tests/helpers.py build_trained_home), read only."""
    return trained_home


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def test_bundle_holds_rows_hashes_and_the_last_checkpoint(source):
    run = source["run"]
    files = _members(source["bundle"])
    manifest = json.loads(files.pop("manifest.json"))
    prefix = f"runs/{run.id}/"
    assert sorted(files) == sorted(prefix + p for p in [
        "checkpoints/step_00000006.safetensors", "checkpoints/step_00000006.state.pt", "config.json",
        "matrices/tiny/importance_step6.npy", "matrices/tiny/nmi_step6.npy", "figures/traverse_img2_step6.png",
        f"external/{source['artifacts'][-1].id}-ext.png"] + [f"snapshots/step_{s:08d}.png" for s in range(1, 7)])
    assert manifest["files"] == {name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
                                 for name, data in files.items()}
    assert (manifest["format"], manifest["format_version"], manifest["schema_revision"]) == ("fqvae-bundle", 2, HEAD)
    assert manifest["checkpoints"] == "last"
    (entry,) = manifest["runs"]
    assert entry["run"] == json.loads(json.dumps(run.to_json()))
    assert entry["run"]["dataset_fingerprint"]["n_images"] == 648
    tiny = {m["name"]: m["value"] for m in entry["metrics"] if m["protocol"] == "tiny"}
    assert tiny == source["numbers"]
    assert len(entry["metrics"]) == len(source["metrics"])
    steps = {a["step"] for a in entry["artifacts"] if a["kind"].startswith("checkpoint")}
    assert steps == {6}
    everything = _members(source["all"])
    assert {n for n in everything if "/checkpoints/" in n} == {
        prefix + f"checkpoints/step_{s:08d}{x}" for s in (3, 6) for x in (".safetensors", ".state.pt")}
    with tarfile.open(source["bundle"]) as tar:
        assert all(m.isreg() and m.mode == 0o644 for m in tar.getmembers())


def test_import_evaluates_to_the_same_numbers(cli, source, db_url, workspace):
    run = source["run"]
    res = cli("runs", "import", source["bundle"], "--db", db_url)
    assert res.exit_code == 0, res.stderr
    assert res.stdout.strip() == run.short_id
    assert f"imported run {run.short_id} (factorqvae on synth3d, seed 0, finished): 13 file(s)" in res.stderr
    shown = json.loads(cli("runs", "show", run.short_id, "--json", "--history", "--db", db_url).stdout)
    assert shown["run"] == json.loads(json.dumps(run.to_json()))
    assert [m | {"id": None} for m in shown["metrics"]] == source["metrics"]
    # what trained it and computed each row travels with the rows: the same records, by the same hashes
    assert [s | {"id": None} for s in shown["starts"]] == source["starts"] and len(source["starts"]) == 1
    assert all(m["provenance"] for m in source["metrics"])
    used = {m["provenance"] for m in source["metrics"]} | {source["starts"][0]["provenance"]}
    assert set(shown["provenance"]) == used
    folder = workspace / "runs" / run.id
    bundled = [a for a in source["artifacts"] if not (a.kind.startswith("checkpoint") and a.step != 6)]
    for theirs, mine in zip(bundled, shown["artifacts"], strict=True):
        assert (mine["kind"], mine["sha256"], mine["bytes"], mine["step"]) == (
            theirs.kind, theirs.sha256, theirs.bytes, theirs.step)
        assert Path(mine["path"]).is_relative_to(folder)
        assert Path(mine["path"]).read_bytes() == Path(theirs.path).read_bytes()

    res = cli("evaluate", run.short_id, "--protocol", "tiny", "--json", "--device", "cpu", "--db", db_url)
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout) == source["numbers"]
    res = cli("traverse", run.short_id, "--device", "cpu", "--db", db_url)
    assert res.exit_code == 0 and Path(res.stdout.strip()).parent == folder / "figures"
    res = cli("table", "--protocol", "tiny", "--rows", "factorqvae", "--format", "json", *TABLE_SET, "--db", db_url)
    (cell,) = json.loads(res.stdout)["cells"]
    assert cell["runs"] == [run.short_id] and cell["dci_d"] == source["numbers"]["dci_d"]

    before = _state(db_url, workspace)
    res = cli("runs", "import", source["bundle"], "--db", db_url)
    assert res.exit_code == 0, res.stderr
    assert "with everything the bundle holds for it; nothing to do" in res.stderr and res.stdout == ""
    assert _state(db_url, workspace) == before


def _format_1(manifest: dict, files: dict) -> None:
    """The bundle as fqvae wrote it before provenance was recorded (format 1, schema 0004)."""
    manifest.update(format_version=1, schema_revision="0004")
    del manifest["provenance"]
    for entry in manifest["runs"]:
        del entry["starts"]
        for m in entry["metrics"]:
            del m["provenance"]


def test_a_bundle_from_before_provenance_imports_as_not_recorded(cli, source, tmp_path):
    run = source["run"]
    old = _rebuild(source["bundle"], tmp_path / "old.tar", edit=_format_1)
    res = cli("runs", "import", old)
    assert res.exit_code == 0, res.stderr
    shown = json.loads(cli("runs", "show", run.short_id, "--json", "--history").stdout)
    assert [m | {"id": None, "provenance": "x"} for m in shown["metrics"]] == [
        m | {"provenance": "x"} for m in source["metrics"]]
    assert shown["starts"] == [] and shown["provenance"] == {}
    assert all(m["provenance"] is None for m in shown["metrics"])
    human = cli("runs", "show", run.short_id).stdout
    assert "trained with" in human and "not recorded" in human and "[1]" not in human


# ---------------------------------------------------------------- refused bundles change nothing


def _state(url: str | None, home: Path) -> dict:
    """Every registry row and every file and folder of the workspace (the registry file aside)."""
    with Registry(url) as reg:
        runs = reg.find_runs()
        rows = [(r.to_json(), [m.to_json() for m in reg.metrics(r.id)], [a.to_json() for a in reg.artifacts(r.id)])
                for r in runs]
    files = {str(p.relative_to(home)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
             for p in sorted(home.rglob("*")) if not p.name.startswith("registry.db")}
    return {"rows": rows, "files": files}


def _rebuild(src: Path, dst: Path, edit=None, extra: tuple = ()) -> Path:
    """A copy of bundle `src` with edit(manifest, files) applied and `extra` (TarInfo, bytes) members added."""
    files = _members(src)
    manifest = json.loads(files.pop("manifest.json"))
    if edit is not None:
        edit(manifest, files)
    with tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as tar:
        text = json.dumps(manifest).encode()
        for name, data in [("manifest.json", text), *files.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return dst


def _special(name: str, kind: bytes, linkname: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.devmajor, info.devminor = kind, linkname, 1, 3
    return info, b""


def _plain(name: str) -> tuple:
    info = tarfile.TarInfo(name)
    info.size = 5
    return info, b"hello"


def _file(files: dict, suffix: str) -> str:
    return next(n for n in files if n.endswith(suffix))


def _flip_a_byte(manifest: dict, files: dict) -> None:
    name = _file(files, ".safetensors")
    data = bytearray(files[name])
    data[len(data) // 2] ^= 1
    files[name] = bytes(data)


def _edit_a_hash(manifest: dict, files: dict) -> None:
    manifest["files"][_file(files, "config.json")]["sha256"] = "0" * 64


def _set(key: str, value):
    def edit(manifest: dict, files: dict) -> None:
        manifest[key] = value

    return edit


def _edit_provenance(manifest: dict, files: dict) -> None:
    record = next(iter(manifest["provenance"].values()))
    record["threads"] = record["threads"] + 1  # claims another thread count under the same hash


def _other_data(manifest: dict, files: dict) -> None:
    manifest["runs"][0]["run"]["dataset_fingerprint"]["n_images"] = 480_000


def _pickle_state(marker: Path):
    """Replace the state file by a pickle that would create `marker` when unpickled, with hashes to match."""
    import torch

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    def edit(manifest: dict, files: dict) -> None:
        buf = io.BytesIO()
        torch.save({"iteration": 6, "payload": Payload()}, buf)
        name = _file(files, ".state.pt")
        files[name] = buf.getvalue()
        spec = {"sha256": hashlib.sha256(files[name]).hexdigest(), "bytes": len(files[name])}
        manifest["files"][name] = spec
        for a in manifest["runs"][0]["artifacts"]:
            if a["kind"] == "checkpoint_state":
                a.update(spec)

    return edit


REFUSED = {
    "changed byte": (lambda t: {"edit": _flip_a_byte}, "does not match its sha256 in the manifest"),
    "manifest hash edit": (lambda t: {"edit": _edit_a_hash}, "config.json does not match its sha256"),
    "absolute path": (lambda t: {"extra": [_plain("/tmp/fqvae-evil.txt")]}, "is an absolute path"),
    "dot-dot": (lambda t: {"extra": [_plain("runs/../../evil.txt")]}, "climbs out of the bundle with '..'"),
    "symlink": (lambda t: {"extra": [_special("runs/x/link", tarfile.SYMTYPE, "/etc/passwd")]},
                "is a symbolic link"),
    "hardlink": (lambda t: {"extra": [_special("runs/x/hard", tarfile.LNKTYPE, "manifest.json")]}, "is a hard link"),
    "device": (lambda t: {"extra": [_special("runs/x/null", tarfile.CHRTYPE)]}, "is a device file"),
    "fifo": (lambda t: {"extra": [_special("runs/x/pipe", tarfile.FIFOTYPE)]}, "is a FIFO"),
    "unlisted file": (lambda t: {"extra": [_plain("runs/notes.txt")]}, "which its manifest does not list"),
    "newer format": (lambda t: {"edit": _set("format_version", 3)}, "format version 3, newer than this fqvae"),
    "provenance edited": (lambda t: {"edit": _edit_provenance}, "provenance records that are malformed or do not "
                          "match their hashes"),
    "provenance missing": (lambda t: {"edit": _set("provenance", {})}, "is not among its records"),
    "newer schema": (lambda t: {"edit": _set("schema_revision", "0099")}, "schema revision '0099'"),
    "other dataset": (lambda t: {"edit": _other_data}, "but the dataset prepared here"),
    "pickle": (lambda t: {"edit": _pickle_state(t / "pwned")},
               "state step_00000006.state.pt holds more than tensors and plain containers, or is damaged (Trying "
               "to load unsupported GLOBAL"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_bundles_change_nothing(cli, source, neighbour, workspace, tmp_path, case):
    make, needle = REFUSED[case]
    bundle = _rebuild(source["bundle"], tmp_path / "bad.tar", **make(tmp_path))
    before = _state(None, workspace)
    res = cli("runs", "import", bundle)
    assert res.exit_code != 0
    assert needle in res.stderr and "nothing was imported" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith("error: ")
    assert _state(None, workspace) == before
    assert not (tmp_path / "pwned").exists()


def test_a_different_run_under_the_same_id_is_refused(cli, source, workspace, tmp_path):
    assert cli("runs", "import", source["bundle"]).exit_code == 0
    before = _state(None, workspace)

    def other_run(manifest: dict, files: dict) -> None:
        manifest["runs"][0]["run"]["config"]["train"]["lr"] = 0.5
        name = _file(files, "config.json")
        files[name] = b"{}"
        manifest["files"][name] = {"sha256": hashlib.sha256(b"{}").hexdigest(), "bytes": 2}

    res = cli("runs", "import", _rebuild(source["bundle"], tmp_path / "other.tar", other_run))
    assert res.exit_code == 2
    assert f"already holds a different run with id {source['run'].id}" in res.stderr, res.stderr
    res2 = cli("runs", "import", source["all"])  # the same run, with a checkpoint this registry lacks
    assert res2.exit_code == 2 and "the bundle's copy has metric rows or files it lacks" in res2.stderr
    assert _state(None, workspace) == before


def test_a_stray_run_folder_is_not_overwritten(cli, source, workspace):
    stray = workspace / "runs" / source["run"].id / "notes.txt"
    stray.parent.mkdir(parents=True)
    stray.write_text("mine")
    before = _state(None, workspace)
    res = cli("runs", "import", source["bundle"])
    assert res.exit_code == 2 and "already exists but this registry has no run" in res.stderr, res.stderr
    assert _state(None, workspace) == before


def test_short_id_and_name_collisions_are_said(cli, source, workspace, tmp_path):
    with Registry() as reg:
        local = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, config={}, name="fq")
        reg.transition(local.id, "finished")
    old, new = source["run"].id, local.short_id + source["run"].id[8:]

    def renamed(manifest: dict, files: dict) -> None:
        manifest["runs"][0]["run"].update(id=new, short_id=new[:8])
        for name in list(files):
            files[name.replace(old, new)] = files.pop(name)
        manifest["files"] = {k.replace(old, new): v for k, v in manifest["files"].items()}

    res = cli("runs", "import", _rebuild(source["bundle"], tmp_path / "clash.tar", renamed))
    assert res.exit_code == 0, res.stderr
    assert res.stdout.strip() == new[1:9]
    assert f"short id {new[:8]} is taken here by another run; run {new} is known here as {new[1:9]}" in res.stderr
    assert f"the name 'fq' also names run {local.short_id} here" in res.stderr
    with Registry() as reg:
        assert reg.get_run(new[1:9]).id == new and reg.get_run(local.short_id).id == local.id
        assert Path(reg.artifacts(new, kind="checkpoint")[0].path).is_file()


def test_a_dataset_not_prepared_here_is_noted(cli, source, tmp_path, monkeypatch):
    monkeypatch.setenv("FQVAE_DATA", str(tmp_path / "no-data"))
    res = cli("runs", "import", source["bundle"])
    assert res.exit_code == 0, res.stderr
    assert ("note: dataset synth3d (648 images 32x32, factors 3x3x3x2x4x3, small grid) is not prepared here; "
            f"evaluating or drawing run {source['run'].short_id} needs it (fqvae data prepare synth3d --grid small)."
            ) in res.stderr


def _fake_run(workspace: Path, status: str = "finished"):
    """A run with a checkpoint (two files), a figure, and the hashes the registry records for them."""
    with Registry() as reg:
        run = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, config={}, name="fake")
        folder = workspace / "runs" / run.id
        for kind, rel, data in (("checkpoint", "checkpoints/step_00000004.safetensors", b"weights"),
                                ("checkpoint_state", "checkpoints/step_00000004.state.pt", b"state"),
                                ("figure", "figures/a.png", b"png")):
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)
            reg.add_artifact(run.id, kind=kind, path=folder / rel, bytes=len(data),
                             sha256=hashlib.sha256(data).hexdigest(), step=4)
        if status != "running":
            reg.transition(run.id, status)
    return run, folder


def test_export_checks_what_it_bundles(cli, workspace, tmp_path):
    run, folder = _fake_run(workspace)
    out = tmp_path / "out"
    out.mkdir()
    (folder / "figures" / "a.png").unlink()
    res = cli("runs", "export", run.short_id, "--bundle", out / "b.tar")
    assert res.exit_code == 0, res.stderr
    assert f"note: left out figure {folder / 'figures' / 'a.png'}: the file is missing" in res.stderr
    assert sorted(_members(out / "b.tar")) == ["manifest.json"] + [
        f"runs/{run.id}/checkpoints/step_00000004{x}" for x in (".safetensors", ".state.pt")]

    (folder / "checkpoints" / "step_00000004.state.pt").write_bytes(b"STATE")
    res = cli("runs", "export", run.short_id, "--bundle", out / "c.tar")
    assert res.exit_code == 1 and "does not match the sha256 recorded in the registry" in res.stderr
    assert not (out / "c.tar").exists()

    queued, _ = _fake_run(workspace, status="queued")
    for args, needle in (
            ([queued.short_id, "--bundle", out / "d.tar"], f"run {queued.short_id} is queued; only a stopped"),
            ([run.short_id, "--bundle", workspace / "registry.db"], "is the results registry"),
            ([run.short_id, "--all"], "--all applies to --bundle only"),
            ([run.short_id, "--bundle", out / "e.tar", "--out", out / "e.csv"], "give one"),
            ([run.short_id, "--model", "ae"], "give runs or filters"),
            (["--bundle", out / "f.tar", "--model", "nosuch"], "no runs match")):
        res = cli("runs", "export", *args)
        assert res.exit_code == 2 and needle in res.stderr, (args, res.stderr)
    assert sorted(p.name for p in out.iterdir()) == ["b.tar"]

    rows = json.loads(cli("runs", "export", run.short_id, "--format", "json").stdout)
    assert [r["id"] for r in rows] == [run.id]


def test_import_refuses_what_is_not_a_bundle(cli, tmp_path):
    (tmp_path / "x.tar").write_bytes(b"not a tar file at all" * 40)
    for path, needle in ((tmp_path / "x.tar", "it is not an uncompressed tar file"),
                         (tmp_path / "none.tar", "no bundle at"),
                         (tmp_path, "is not a regular file")):
        res = cli("runs", "import", path)
        assert res.exit_code != 0 and needle in res.stderr and len(res.stderr.splitlines()) == 1, res.stderr
    with tarfile.open(tmp_path / "empty.tar", "w") as tar:
        info, data = _plain("notes.txt")
        tar.addfile(info, io.BytesIO(data))
    res = cli("runs", "import", tmp_path / "empty.tar")
    assert res.exit_code == 1 and "it has no manifest.json, so it is not an fqvae bundle" in res.stderr


def test_files_are_taken_back_when_the_rows_fail(cli, source, neighbour, workspace, monkeypatch):
    from fqvae_cli.errors import RegistryError

    def fail(self, runs):
        assert (workspace / "runs" / runs[0][0].id / "config.json").is_file()  # files first, then rows
        raise RegistryError("the registry went away.")

    before = _state(None, workspace)
    monkeypatch.setattr(Registry, "import_runs", fail)
    res = cli("runs", "import", source["bundle"])
    assert res.exit_code == 1 and "the registry went away" in res.stderr
    assert _state(None, workspace) == before
