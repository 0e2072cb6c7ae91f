"""Test helpers shared by the training, evaluation and sweep tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# A tiny run: compact trunk, few steps, small batches, one thread (bit-exact across processes), no
# snapshots (at 6 iterations the default draws one every iteration: a PNG with a 12-latent traversal each).
TINY = ["--steps", "6", "--batch-size", "8", "--set", "train.checkpoint_every=3", "--set", "train.log_every=2",
        "--set", "train.threads=1", "--set", "eval.mse_images=64", "--set", "model.disc_width=32",
        "--set", "train.snapshot_every=0", "--device", "cpu"]
# After TINY: snapshots back at the default (about ten per run: one per iteration of a tiny run).
SNAPSHOTS = ["--set", "train.snapshot_every=1"]


def run_cli(*args: str) -> tuple[int, str, str]:
    """The CLI in this process, outside any test: (exit code, stdout, stderr)."""
    import contextlib
    import io

    from fqvae_cli.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def run_ok(*args: str) -> str:
    """run_cli that must succeed; its stdout."""
    code, out, err = run_cli(*args)
    assert code == 0, (args, err)
    return out


def prepare_small_synth(root: Path) -> None:
    """Render the small synth3d grid into `root` (once per test session)."""
    saved = {k: os.environ.get(k) for k in ("FQVAE_DATA", "FQVAE_PLAIN_PROGRESS")}
    os.environ.update(FQVAE_DATA=str(root), FQVAE_PLAIN_PROGRESS="1")
    try:
        run_ok("data", "prepare", "synth3d", "--grid", "small")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def fqvae_subprocess(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    full_env = {**os.environ, **(env or {}), "FQVAE_PLAIN_PROGRESS": "1"}
    return subprocess.Popen([sys.executable, "-m", "fqvae_cli", *args], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def write_tiny_protocol(path: Path) -> Path:
    """A copy of experiments.yaml with an extra, very small metric protocol `tiny` for fast tests (450
    rows; the intervention scores on batches of 8, 40 training and 20 evaluation points)."""
    import yaml

    from fqvae_cli.experiments import experiments_path

    data = yaml.safe_load(experiments_path().read_text())
    data["protocols"]["tiny"] = {"dci_train": 300, "dci_test": 150, "infomec_n": 300, "mig_n": 300,
                                 "sap_train": 300, "sap_test": 150, "modularity_train": 300, "modularity_test": 150,
                                 "factor_vae_batch": 8, "factor_vae_train": 40, "factor_vae_eval": 20,
                                 "factor_vae_variance": 200, "beta_vae_batch": 8, "beta_vae_train": 40,
                                 "beta_vae_eval": 20}
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


# Run the CLI in a child that SIGKILLs itself right after its first complete checkpoint (files and
# registry rows written): a crash at a known point, with no polling race.
_KILL_AFTER_FIRST_CHECKPOINT = """
import os, signal, sys
from fqvae_cli.training import recorder
_save = recorder.Recorder.checkpoint
def checkpoint(self, *args, **kwargs):
    _save(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
recorder.Recorder.checkpoint = checkpoint
from fqvae_cli.cli.main import main
main(sys.argv[1:])
"""


def fqvae_killed_after_first_checkpoint(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {}), "FQVAE_PLAIN_PROGRESS": "1"}
    return subprocess.run([sys.executable, "-c", _KILL_AFTER_FIRST_CHECKPOINT, *args], env=full_env,
                          capture_output=True, text=True, timeout=600)


def stop_after_checkpoint(monkeypatch, iteration: int) -> None:
    """In this process, a Ctrl-C lands right after the checkpoint at `iteration` is complete: the run
    ends interrupted there, as a user would leave it."""
    from fqvae_cli.training import recorder

    save = recorder.Recorder.checkpoint

    def checkpoint(self, it, model, state):
        save(self, it, model, state)
        if it == iteration:
            raise KeyboardInterrupt

    monkeypatch.setattr(recorder.Recorder, "checkpoint", checkpoint)


def grid_factors(sizes: tuple[int, ...], reps: int, seed: int = 0):
    """Every factor combination `reps` times, shuffled: factors exactly balanced and independent."""
    import numpy as np

    axes = np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij")
    grid = np.stack(axes, axis=-1).reshape(-1, len(sizes))
    rows = np.tile(grid, (reps, 1))
    return rows[np.random.default_rng(seed).permutation(len(rows))]


# ---- one trained and evaluated workspace per test session ----------------------------------------------

def build_trained_home(root: Path) -> dict:
    """Train and evaluate, in `root`/home (FQVAE_DATA and FQVAE_EXPERIMENTS set by the caller), what the
    evaluate, figures, report, bundle and runs tests read; every run TINY with snapshots on:
    - `report`: (model, seed) -> short id of QVAE seeds 0 and 1 and an AE seed 0 named `ae`, evaluated on
      the tiny protocol; QVAE seed 0 has its traversal drawn (the cells of `--rows ae,qvae`);
    - `fq`: a FactorQVAE named `fq`, evaluated (`numbers`, the --json output), its traversal drawn in its
      folder and once outside it (`out`/ext.png), exported as `bundle` (last checkpoint) and `all` (--all);
    - `qvae`: a QVAE named `qvae` of 5 iterations (outside the report's cells), never evaluated;
    - the rows of `fq` as the registry holds them: `run`, `metrics`, `artifacts`, `starts`."""
    import json

    from fqvae_cli.registry.store import Registry

    home, out = root / "home", root / "bundles"
    out.mkdir(parents=True)
    saved = os.environ.get("FQVAE_HOME")
    os.environ["FQVAE_HOME"] = str(home)
    try:
        report = {}
        # the AE first: its name `ae` is also hex, refused once a run id starts with it
        for model, seed, name in (("ae", 0, ["--name", "ae"]), ("qvae", 0, []), ("qvae", 1, [])):
            short = run_ok("train", "--model", model, *TINY, *SNAPSHOTS, "--seed", seed, *name).strip().splitlines()[-1]
            run_ok("evaluate", short, "--protocol", "tiny", "--device", "cpu")
            report[(model, seed)] = short
        run_ok("traverse", report[("qvae", 0)], "--device", "cpu")
        fq = run_ok("train", "--model", "factorqvae", *TINY, *SNAPSHOTS, "--name", "fq").strip().splitlines()[-1]
        numbers = json.loads(run_ok("evaluate", fq, "--protocol", "tiny", "--json", "--device", "cpu"))
        run_ok("traverse", fq, "--device", "cpu")
        run_ok("traverse", fq, "--device", "cpu", "--out", out / "ext.png")
        for bundle, extra in (("run.tar", []), ("all.tar", ["--all"])):
            code, _, err = run_cli("runs", "export", fq, "--bundle", out / bundle, *extra)
            assert code == 0 and f"wrote 1 run(s) ({fq})" in err, err
        qvae = run_ok("train", "--model", "qvae", *TINY, "--steps", "5", "--name", "qvae").strip().splitlines()[-1]
        with Registry() as reg:
            run = reg.get_run(fq)
            rows = {"metrics": [m.to_json() | {"id": None} for m in reg.metrics(run.id)],
                    "artifacts": reg.artifacts(run.id),
                    "starts": [s.to_json() | {"id": None} for s in reg.starts([run.id])]}
    finally:
        if saved is None:
            os.environ.pop("FQVAE_HOME", None)
        else:
            os.environ["FQVAE_HOME"] = saved
    return dict(home=home, report=report, fq=fq, qvae=qvae, run=run, numbers=numbers, bundle=out / "run.tar",
                all=out / "all.tar", out=out, **rows)


def copy_trained_home(made: dict, home: Path) -> dict:
    """The trained workspace copied to `home` (a consistent copy of the registry, every path in it moved
    along), with `made`'s facts and `home`."""
    import shutil
    import sqlite3

    src = made["home"]
    shutil.copytree(src, home, dirs_exist_ok=True,
                    ignore=lambda folder, names: [n for n in names if n.startswith("registry.db")]
                    if Path(folder) == src else [])
    source = sqlite3.connect(src / "registry.db")
    target = sqlite3.connect(home / "registry.db")
    try:
        source.backup(target)
        old, new = str(src), str(home)
        for (name,) in target.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
                                      ).fetchall():
            for col in target.execute(f'PRAGMA table_info("{name}")').fetchall():
                if col[2].upper() in ("", "TEXT", "VARCHAR", "JSON") or "CHAR" in col[2].upper():
                    target.execute(f'UPDATE "{name}" SET "{col[1]}" = replace("{col[1]}", ?, ?) '
                                   f'WHERE instr("{col[1]}", ?) > 0', (old, new, old))
        target.commit()
    finally:
        source.close()
        target.close()
    return {**made, "home": home}


def error_sentence(result, *fragments: str) -> str:
    """A refusal by one sentence of a typed error: exit non-zero, one `error:` line and it the last (progress
    lines may come first), no traceback, not the CLI's last-resort 'unexpected'; each fragment in it.
    Returns the error line."""
    assert result.exit_code != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in result.stderr, result.stderr
    assert not errors[0].startswith("error: unexpected"), errors[0]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]
