"""A table cell names the runs of its setup that its numbers leave out, and why: failed runs (seed 9 of
a cell with seeds 0, 1 and 9 diverged to NaN), interrupted ones, finished runs not evaluated with the
table's protocol, and older runs of a seed; in every format of `fqvae table` and in `fqvae report`."""

from __future__ import annotations

import csv
import io
import json

import pytest

from fqvae_cli.experiments import COLUMNS, resolve_run_config
from fqvae_cli.registry.store import Registry
from fqvae_cli.runs.tables import build_table, render_text

VALUES = [0.8, 0.9, 0.6, 0.7, 0.9, 0.5, 1e-4]


def _run(reg, seed: int, status: str, scored: bool = True) -> str:
    cfg = resolve_run_config("factorqvae", "synth3d", "quick", seed, {})
    run = reg.create_run(model="factorqvae", dataset="synth3d", profile="quick", seed=seed,
                         config=cfg.model_dump(mode="json"))
    if scored:
        reg.log_metrics(run.id, [(c, v, 6, "eval", "quick") for c, v in zip(COLUMNS, VALUES, strict=True)])
    reg.transition(run.id, status, error="training diverged (non-finite loss)" if status == "failed" else None)
    return run.short_id


@pytest.fixture
def seeds_0_1_and_failed_9(workspace) -> tuple[list[str], str]:
    with Registry() as reg:
        counted = [_run(reg, 0, "finished"), _run(reg, 1, "finished")]
        failed = _run(reg, 9, "failed", scored=False)
    return counted, failed


def test_a_failed_run_is_named_in_every_format(cli, seeds_0_1_and_failed_9):
    counted, failed = seeds_0_1_and_failed_9
    line = f"† synth3d / FactorQVAE: 1 failed run not counted: {failed}"
    with Registry() as reg:
        t = build_table(reg, "1", "quick", protocol="quick", rows=["factorqvae"])
    cell = t.cells[("synth3d", "factorqvae")]
    assert cell.runs == counted and cell.uncounted == {"failed": [failed]}

    md = render_text(t, "markdown")
    assert "| FactorQVAE | 2† | 0.80±0.00 (0.86, -0.06) |" in md
    assert f"_{line}_  " in md.splitlines()
    data = json.loads(render_text(t, "json"))
    (rec,) = data["cells"]
    assert rec["n_seeds"] == 2 and rec["not_counted"] == {"failed": [failed]} and data["not_counted"] == [line]
    (row,) = csv.DictReader(io.StringIO(render_text(t, "csv")))
    assert row["runs"] == " ".join(counted) and row["not_counted"] == f"1 failed run not counted: {failed}"
    assert f"% {line}" in render_text(t, "latex").splitlines()

    res = cli("table", "--rows", "factorqvae")
    assert res.exit_code == 0, res.stderr
    assert line in res.stdout and "│ 2† │" in res.stdout, res.stdout
    res = cli("table", "--rows", "factorqvae", "--format", "csv")
    assert f",{' '.join(counted)},1 failed run not counted: {failed}" in res.stdout


def test_every_reason_a_run_is_left_out(workspace):
    with Registry() as reg:
        older = _run(reg, 0, "finished")
        newer = _run(reg, 0, "finished")
        unscored = _run(reg, 2, "finished", scored=False)
        interrupted = _run(reg, 3, "interrupted", scored=False)
        failed = [_run(reg, 9, "failed", scored=False), _run(reg, 8, "failed", scored=False)]
        other = _run(reg, 7, "finished")
        reg.update_config(reg.get_run(other).id, {**reg.get_run(other).config, "train": {
            **reg.get_run(other).config["train"], "lr": 0.5}})  # another setup: not this cell's run at all
        t = build_table(reg, "1", "quick", protocol="quick", rows=["factorqvae"])
    cell = t.cells[("synth3d", "factorqvae")]
    assert cell.runs == [newer]
    assert render_text(t, "json").count(other) == 0
    (line,) = json.loads(render_text(t, "json"))["not_counted"]
    assert line == (f"† synth3d / FactorQVAE: 2 failed runs not counted: {failed[0]}, {failed[1]}; 1 interrupted run "
                    f"not counted (resume it to count it): {interrupted}; 1 finished run not counted (not evaluated "
                    f"with protocol quick): {unscored}; 1 older run not counted (a newer run of its seed counts): "
                    f"{older}")


def test_the_report_names_the_failed_run(cli, seeds_0_1_and_failed_9, tmp_path):
    _counted, failed = seeds_0_1_and_failed_9
    res = cli("report", "--rows", "factorqvae", "--device", "cpu", "--out", tmp_path / "rep")
    assert res.exit_code == 0, res.stderr
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "<tr><td>FactorQVAE</td><td>2†</td>" in html
    assert f'<p class="missing">† synth3d / FactorQVAE: 1 failed run not counted: {failed}</p>' in html
