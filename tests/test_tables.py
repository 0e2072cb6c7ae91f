"""Tables from registry rows: cell matching, mean ± std, published values and deltas, best marks,
missing cells, every output format, and experiments.yaml validation."""

from __future__ import annotations

import json

import pytest

from fqvae_cli.experiments import COLUMNS
from fqvae_cli.runs.cell_sources import expected_setup
from fqvae_cli.runs.tables import build_table, render_text


def _registry():
    from fqvae_cli.registry.store import Registry

    return Registry()


def _add_run(reg, model, values, *, seed=0, dataset="synth3d", profile="quick", protocol="paper", model_set=None):
    from fqvae_cli.experiments import resolve_run_config

    cfg = resolve_run_config(model, dataset, profile, seed, {"model": model_set or {}})
    run = reg.create_run(model=model, dataset=dataset, profile=profile, seed=seed, config=cfg.model_dump(mode="json"))
    reg.transition(run.id, "finished")
    reg.log_metrics(run.id, [(c, v, 1, "eval", protocol) for c, v in zip(COLUMNS, values, strict=True)])
    return run


def test_cells_mean_std_published_delta_and_best():
    reg = _registry()
    # two seeds of FactorQVAE, one QVAE, one QVAE with a swept beta that must NOT enter the table
    _add_run(reg, "factorqvae", [0.8, 0.9, 0.6, 0.7, 0.9, 0.5, 1e-4], seed=0)
    _add_run(reg, "factorqvae", [0.6, 0.9, 0.4, 0.9, 0.9, 0.3, 3e-4], seed=1)
    _add_run(reg, "qvae", [0.5, 0.95, 0.7, 0.6, 0.95, 0.6, 0.5e-4])
    _add_run(reg, "qvae", [0.99] * 6 + [1e-6], model_set={"beta": 0.5})
    _add_run(reg, "qvae", [0.1] * 7, protocol="quick")  # other protocol: not shown
    t = build_table(reg, "1", "quick")
    fq = t.cells[("synth3d", "factorqvae")]
    assert fq.n == 2
    assert fq.mean == pytest.approx([0.7, 0.9, 0.5, 0.8, 0.9, 0.4, 2.0])  # MSE shown x 1e4
    assert fq.std[0] == pytest.approx(0.1414213562, abs=1e-9)  # sample std of (0.8, 0.6)
    assert fq.published == [0.86, 0.97, 0.65, 0.84, 0.89, 0.52, 0.6]  # Shapes3D numbers, labelled as such
    q = t.cells[("synth3d", "qvae")]
    assert q.n == 1 and q.mean[0] == pytest.approx(0.5)
    assert t.cells[("synth3d", "ae")].n == 0
    # QVAE has one seed: no column's best can be told apart from the second best, and the table says so
    assert t.best == {}
    assert len(t.undecided["synth3d"]) == 7 and all("one seed" in u for u in t.undecided["synth3d"])
    assert len(t.missing) == 7 and all(cmd.startswith("fqvae reproduce --paper-table 1") for cmd in t.missing)
    md = render_text(t, "markdown")
    assert "| 0.70±0.14 (0.86, -0.16) |" in md and "no best marked for D (one seed" in md
    assert "NOT the paper's setting" in md and "'quick' profile" in md
    data = json.loads(render_text(t, "json"))
    rec = next(c for c in data["cells"] if c["row"] == "factorqvae")
    assert rec["n_seeds"] == 2 and rec["dci_d"] == pytest.approx(0.7) and rec["dci_d_published"] == 0.86
    csv = render_text(t, "csv").splitlines()
    assert csv[0].startswith("table,profile,protocol,dataset,row,label,n_seeds") and len(csv) == 1 + 9
    assert r"0.70$\pm$0.14" in render_text(t, "latex") and r"\textbf" not in render_text(t, "latex")


def test_best_is_marked_only_beyond_the_spread_of_seeds():
    reg = _registry()
    # D: FactorQVAE 0.80±0.01 vs QVAE 0.50±0.01, told apart (gap 0.30 > 0.02).
    # I: 0.90±0.10 vs 0.85±0.10, within their std (gap 0.05 < 0.20): nobody is marked.
    # MSE (lowest best): QVAE 1.0±0.1 vs FactorQVAE 2.0±0.1 (x 1e4), told apart.
    for seed, d, i, m in [(0, 0.79, 1.0, 1.9e-4), (1, 0.81, 0.8, 2.1e-4)]:
        _add_run(reg, "factorqvae", [d, i, 0.5, 0.5, 0.5, 0.5, m], seed=seed)
    for seed, d, i, m in [(0, 0.49, 0.95, 0.9e-4), (1, 0.51, 0.75, 1.1e-4)]:
        _add_run(reg, "qvae", [d, i, 0.5, 0.5, 0.5, 0.5, m], seed=seed)
    t = build_table(reg, "1", "quick")
    assert t.best == {("synth3d", "factorqvae"): {0}, ("synth3d", "qvae"): {6}}
    undecided = t.undecided["synth3d"]
    assert any(u.startswith("I (best and second within their std)") for u in undecided)
    assert len(undecided) == 5  # I, C, InfoM, InfoE, InfoC (C..InfoC tie exactly)
    assert "**0.80±0.01**" in render_text(t, "markdown")


def test_table2_rows_by_codebook_shape():
    reg = _registry()
    _add_run(reg, "qvae", [0.5] * 7, model_set={"codebook_size": 32})
    _add_run(reg, "vqvae", [0.4] * 7, model_set={"codebook_size": 64, "codebook_dim": 16})
    t = build_table(reg, "2", "quick")
    assert t.cells[("synth3d", "qvae-32x1")].n == 1
    assert t.cells[("synth3d", "vqvae-64x16")].n == 1
    assert t.cells[("synth3d", "qvae-64x1")].n == 0 and t.cells[("synth3d", "vqvae-64x8")].n == 0


def _cell_model(model: str, dataset: str, row_set: dict) -> dict:
    """The model settings a paper-profile cell expects, flattened (trunk, bottleneck and regularizers)."""
    m = expected_setup(model, dataset, "paper", row_set)["model"]
    flat = {**m, **m["bottleneck"]}
    for reg in m["regularizers"]:
        flat.update(reg)
    return flat


def test_expected_config_uses_table_a3_weights():
    assert _cell_model("factorqvae", "shapes3d", {})["gamma"] == 1e-4
    assert _cell_model("factorqvae", "isaac3d", {})["beta"] == 5e-5
    assert _cell_model("vqvae", "shapes3d", {"codebook_dim": 16})["codebook_dim"] == 16
    assert _cell_model("qvae", "shapes3d", {})["trunk"] == "paper"


def test_table_cli_formats_and_errors(cli, tmp_path):
    _add_run(_registry(), "ae", [0.5] * 7)
    for fmt in ("markdown", "latex", "csv", "json"):
        res = cli("table", "--paper-table", "1", "--format", fmt)
        assert res.exit_code == 0, res.stderr
    out = tmp_path / "t.md"
    assert cli("table", "--paper-table", "2", "--format", "markdown", "--out", str(out)).exit_code == 0
    assert "Table 2" in out.read_text()
    res = cli("table", "--paper-table", "1")
    assert res.exit_code == 0 and "AE" in res.stdout and "fqvae reproduce" in res.stdout
    for args, needle in ((["--paper-table", "3"], "unknown paper table '3'"),
                         (["--format", "html"], "unknown format 'html'"),
                         (["--profile", "nosuch"], "unknown profile 'nosuch'")):
        res = cli("table", *args)
        assert res.exit_code == 2 and needle in res.stderr, res.stderr


def test_experiments_typo_names_the_key(cli, tmp_path, monkeypatch):
    from fqvae_cli.experiments import experiments_path

    text = experiments_path().read_text()
    bad = tmp_path / "experiments.yaml"
    for old, new, needle in [
        ("      steps: 6000\n", "      stpes: 6000\n", "train.stpes: unknown key"),
        ("    factorqvae: {beta: 1.0e-3, gamma: 1.0e-4}", "    factorqvae: {beta: 1.0e-3, gama: 1.0e-4}",
         "shapes3d.factorqvae: model.gama: unknown key"),
        ("  quick: {dci_train: 2000", "  quick: {dci_trian: 2000", "protocols.quick.dci_trian"),
        ("{key: ae, label: AE, model: ae}", "{key: ae, label: AE, model: aee}", "unknown model 'aee'"),
    ]:
        assert old in text, old
        bad.write_text(text.replace(old, new, 1))
        monkeypatch.setenv("FQVAE_EXPERIMENTS", str(bad))
        res = cli("train", "--steps", "1")
        assert res.exit_code == 2, res.stderr
        assert needle in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1


def test_extra_metric_columns_beside_the_papers(cli):
    reg = _registry()
    a = _add_run(reg, "factorqvae", [0.8, 0.9, 0.6, 0.7, 0.9, 0.5, 1e-4], seed=0)
    b = _add_run(reg, "factorqvae", [0.6, 0.9, 0.4, 0.9, 0.9, 0.3, 3e-4], seed=1)
    reg.log_metrics(a.id, [("mig", 0.30, 1, "eval", "paper"), ("sap", 0.10, 1, "eval", "paper")])
    reg.log_metrics(b.id, [("mig", 0.20, 1, "eval", "paper")])  # seed 1 has no SAP yet
    t = build_table(reg, "1", "quick", metrics=["mig", "sap"])
    assert t.columns == [*COLUMNS, "mig", "sap"] and t.titles[-2:] == ["MIG", "SAP"]
    fq = t.cells[("synth3d", "factorqvae")]
    assert fq.mean[:7] == pytest.approx([0.7, 0.9, 0.5, 0.8, 0.9, 0.4, 2.0])  # the paper's columns unchanged
    assert fq.mean[7:] == pytest.approx([0.25, 0.10]) and fq.counts == [2] * 8 + [1]
    assert fq.published[7:] == [None, None]  # the paper reports neither
    assert "fqvae evaluate --all --protocol paper --metrics mig,sap" in t.missing
    md = render_text(t, "markdown")
    assert "| MIG | SAP |" in md and "0.25±0.07 |" in md and "0.10 [1 of 2 seeds] |" in md
    assert "MIG, SAP: not reported in the paper (no published values)" in md
    rec = next(c for c in json.loads(render_text(t, "json"))["cells"] if c["row"] == "factorqvae")
    assert rec["mig"] == pytest.approx(0.25) and rec["mig_published"] is None
    assert build_table(reg, "1", "quick").columns == list(COLUMNS)  # without --metrics: the paper's table

    res = cli("table", "--protocol", "paper", "--metrics", "mig,sap", "--format", "csv")
    assert res.exit_code == 0, res.stderr
    assert res.stdout.splitlines()[0].endswith("mig,mig_std,mig_published,sap,sap_std,sap_published,runs,not_counted")
    res = cli("table", "--protocol", "paper", "--metrics", "mig,sap")
    assert res.exit_code == 0 and "MIG" in res.stdout and "SAP" in res.stdout, res.stderr
    res = cli("table", "--metrics", "nosuch")
    assert res.exit_code == 2 and "unknown metric 'nosuch'" in res.stderr


def test_the_field_table_shows_mig_and_sap_unless_told_otherwise():
    reg = _registry()
    a = _add_run(reg, "betatcvae", [0.5, 0.8, 0.4, 0.6, 0.7, 0.5, 2e-4], seed=0)
    reg.log_metrics(a.id, [("mig", 0.125, 1, "eval", "paper"), ("sap", 0.0625, 1, "eval", "paper")])
    t = build_table(reg, "field", "quick", rows=["betatcvae"])
    assert t.columns == [*COLUMNS, "mig", "sap"]
    assert t.cells[("synth3d", "betatcvae")].mean[7:] == pytest.approx([0.125, 0.0625])
    assert build_table(reg, "field", "quick", rows=["betatcvae"], metrics=["sap"]).columns == [*COLUMNS, "sap"]
