"""A side job never costs a run: a snapshot or TensorBoard write that fails is one warning naming the
cause the system gave, and the run trains on, checkpoints and finishes. A checkpoint that cannot be
written (the run's own state) stops it in one sentence, without torch's internals."""

from __future__ import annotations

import errno
from contextlib import contextmanager

import pytest
from helpers import SNAPSHOTS, TINY

from fqvae_cli.registry.lifecycle import FINISHED


def _registry():
    from fqvae_cli.registry.store import Registry

    return Registry()


def _checkpoint_steps(reg, run) -> list[int]:
    return sorted(a.step for a in reg.artifacts(run.id, kind="checkpoint"))


def test_a_snapshots_folder_that_is_a_file_is_one_warning_and_the_run_finishes(cli, small_data, monkeypatch):
    from fqvae_cli.training import recorder

    made = recorder.Recorder.__init__

    def snapshots_folder_is_a_file(self, *args, **kwargs):
        made(self, *args, **kwargs)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "snapshots").write_text("a file where the snapshots folder goes\n")

    monkeypatch.setattr(recorder.Recorder, "__init__", snapshots_folder_is_a_file)
    res = cli("train", "--model", "ae", *TINY, *SNAPSHOTS, "--name", "blocked")
    assert res.exit_code == 0, res.stderr
    reg = _registry()
    run = reg.get_run("blocked")
    assert run.status == FINISHED and run.error is None
    assert _checkpoint_steps(reg, run) == [3, 6]
    assert reg.artifacts(run.id, kind="snapshot") == []
    said = " ".join(res.stderr.split())  # the console wraps long lines
    assert said.count("snapshots stopped") == 1, said  # once, although a snapshot was due at every iteration
    assert "snapshots stopped at iteration 1 (could not write the snapshot" in said
    assert f"runs/{run.id}/snapshots/step_00000001.png" in "".join(said.split())  # a path may wrap anywhere
    assert "(File exists)); training goes on without snapshots." in said
    assert "disk full" not in said and "Traceback" not in said


def test_a_snapshot_without_permission_names_the_permission(cli, small_data, monkeypatch):
    from fqvae_cli.training import snapshots

    @contextmanager
    def denied(path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))
        yield path

    monkeypatch.setattr(snapshots, "atomic_path", denied)
    res = cli("train", "--model", "ae", *TINY, *SNAPSHOTS, "--name", "denied")
    assert res.exit_code == 0, res.stderr
    reg = _registry()
    run = reg.get_run("denied")
    assert run.status == FINISHED and _checkpoint_steps(reg, run) == [3, 6]
    said = " ".join(res.stderr.split())
    assert said.count("snapshots stopped") == 1 and "(Permission denied)); training goes on" in said, said
    assert "disk full" not in said


def test_a_tensorboard_write_that_fails_is_one_warning(cli, small_data, monkeypatch):
    pytest.importorskip("tensorboardX")
    from fqvae_cli.trackers.tensorboard import TensorBoardTracker

    def broken(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(TensorBoardTracker, "log_scalars", broken)
    monkeypatch.setattr(TensorBoardTracker, "log_image", broken)
    res = cli("train", "--model", "ae", *TINY, *SNAPSHOTS, "--set", "train.tensorboard=true", "--name", "tb")
    assert res.exit_code == 0, res.stderr
    reg = _registry()
    run = reg.get_run("tb")
    assert run.status == FINISHED and _checkpoint_steps(reg, run) == [3, 6]
    said = " ".join(res.stderr.split())
    assert said.count("tensorboard tracker stopped") == 1  # TensorBoard is a tracker (train.trackers)
    assert "the tensorboard tracker stopped (Read-only file system); the run goes on without it." in said
    assert len(reg.artifacts(run.id, kind="snapshot")) == 6  # the snapshots themselves go on


def test_a_short_checkpoint_write_is_one_sentence_without_torch_internals(tmp_path, monkeypatch):
    import torch

    from fqvae_cli.errors import StorageError
    from fqvae_cli.training import checkpoint

    def cut_short(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4416 vs 4314\n"
                           "frame #0: c10::ThrowEnforceNotMet(...)")

    monkeypatch.setattr(checkpoint.torch, "save", cut_short)
    with pytest.raises(StorageError) as caught:
        checkpoint.save_checkpoint(tmp_path / "ckpt", 6, torch.nn.Linear(2, 2), {}, {})
    message = str(caught.value)
    assert message == (f"could not write the checkpoint at iteration 6 in {tmp_path / 'ckpt'} (the file could not "
                       "be written in full; is the disk full?).")
    assert list((tmp_path / "ckpt").iterdir()) == []  # nothing half-written is left


def test_a_checkpoint_without_permission_names_the_permission(tmp_path, monkeypatch):
    import torch

    from fqvae_cli.errors import StorageError
    from fqvae_cli.training import checkpoint

    def denied(obj, f, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(f))

    monkeypatch.setattr(checkpoint.torch, "save", denied)
    with pytest.raises(StorageError, match=r"at iteration 3 in .* \(Permission denied\)\.$"):
        checkpoint.save_checkpoint(tmp_path / "ckpt", 3, torch.nn.Linear(2, 2), {}, {})
