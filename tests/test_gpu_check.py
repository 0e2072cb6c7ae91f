"""benchmarks/gpu_check.sh --smoke: the device check's whole sequence (benchmark, synth3d rendered and
prepared as shapes3d, a paper-profile FactorQVAE, evaluation) on the CPU with tiny sizes, so the script
that is run on a lent GPU cannot rot between loans."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FQVAE_PYTHON": sys.executable}
    # Its own process group, so a timeout stops the Python children the script started too, not only bash.
    proc = subprocess.Popen(["bash", str(SCRIPT), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=Path("/"), start_new_session=True)  # any folder: it finds the repository
    try:
        out, err = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_smoke_prints_every_figure_on_one_line():
    res = _run("--smoke")
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.splitlines()
    assert len(lines) == 1, res.stdout  # progress and logs go to stderr; stdout is the summary alone
    head, _, body = lines[0].partition(": ")
    assert head == "gpu_check smoke"
    figures = dict(item.split("=", 1) for item in body.split())
    expected = {f"{model}/{variant}_{what}" for model in ("ae", "factorqvae") for variant in ("fp32", "bf16")
                for what in ("ms", "img_s", "warmup_s", "peak_pct")}
    expected |= {"data_s", "train_4_steps_s", "train_img_s", "eval_s", "D", "InfoM", "MSE"}
    assert set(figures) == expected, set(figures) ^ expected
    values = {k: float(v) for k, v in figures.items()}
    assert all(math.isfinite(v) for v in values.values()), values
    for key in ("ae/fp32_ms", "factorqvae/bf16_img_s", "train_4_steps_s", "train_img_s", "eval_s", "MSE"):
        assert values[key] > 0, key
    assert 0 <= values["D"] <= 1 and 0 <= values["InfoM"] <= 1


def test_unknown_argument_exits_non_zero():
    res = _run("--fast")
    assert res.returncode == 2 and "usage" in res.stderr
