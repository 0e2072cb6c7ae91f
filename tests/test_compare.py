"""`fqvae figures compare`: the cells `fqvae table` shows for the same options, drawn per metric and
model with every seed, the mean ± std and the published value."""

from __future__ import annotations

import numpy as np
import pytest
from test_tables import _add_run, _registry

from fqvae_cli.errors import UsageError
from fqvae_cli.figures.compare import draw_compare, panel_keys
from fqvae_cli.runs.tables import build_table


def test_panel_names_are_table_titles_keys_or_other_metrics():
    assert panel_keys(["D", "InfoM", "MSE"]) == (["dci_d", "infom", "mse"], [])
    assert panel_keys(["dci_c", "mse×10⁴", "infom"]) == (["dci_c", "mse", "infom"], [])
    assert panel_keys(["mig", "D", "Explicitness"]) == (["mig", "dci_d", "explicitness"], ["mig", "modularity"])
    assert panel_keys(None)[0] == ["dci_d", "dci_i", "dci_c", "infom", "infoe", "infoc", "mse"]
    with pytest.raises(UsageError, match="unknown metric 'Dee' for --metrics; choose from: D, I, C, InfoM"):
        panel_keys(["Dee"])


def _marks(ax, label):
    """x positions of the marks labelled `label` in one panel, per row (y rounded to the row)."""
    out: dict[int, list[float]] = {}
    for artist in ax.collections + ax.containers:
        if artist.get_label() != label:
            continue
        if hasattr(artist, "get_offsets"):
            pts = np.asarray(artist.get_offsets())
        else:  # an errorbar: its data line holds the mean
            pts = np.column_stack(artist.lines[0].get_data())
        for x, y in pts:
            out.setdefault(int(round(y)), []).append(float(x))
    return out


def test_every_seed_the_mean_and_the_published_value_in_table_order():
    reg = _registry()
    _add_run(reg, "factorqvae", [0.8, 0.9, 0.6, 0.7, 0.9, 0.5, 1e-4], seed=0)
    _add_run(reg, "factorqvae", [0.6, 0.9, 0.4, 0.9, 0.9, 0.3, 3e-4], seed=1)
    _add_run(reg, "qvae", [0.5, 0.95, 0.7, 0.6, 0.95, 0.6, 0.5e-4])
    t = build_table(reg, "1", "quick", rows=["qvae", "ae", "factorqvae"], protocol="paper")
    assert t.cells[("synth3d", "factorqvae")].values[1][0] == 0.6  # per-seed values kept, seed order
    fig = draw_compare(t, ["dci_d", "mse"])
    d, mse = fig.axes[0], fig.axes[1]
    assert [tick.get_text() for tick in d.get_yticklabels()] == ["QVAE", "AE (no runs)", "FactorQVAE"]
    assert _marks(d, "each seed") == {0: [0.5], 2: [0.8, 0.6]}
    assert _marks(d, "mean ± std over seeds")[2] == pytest.approx([0.7])
    assert _marks(d, "published") == {0: [0.73], 1: [0.52], 2: [0.86]}  # the paper's Shapes3D column
    assert _marks(mse, "each seed")[2] == pytest.approx([1.0, 3.0])  # MSE x 1e4, as the table shows it
    assert mse.get_xscale() == "linear" and "lower is better" in mse.get_title()
    assert 1 not in _marks(d, "each seed") and 1 in _marks(d, "published")  # AE: published value only
    legend = fig.legends[0]
    assert [x.get_text() for x in legend.get_texts()] == ["each seed", "mean ± std over seeds", "published"]


def test_compare_cli_takes_the_table_options(cli, tmp_path):
    reg = _registry()
    _add_run(reg, "qvae", [0.5, 0.95, 0.7, 0.6, 0.95, 0.6, 0.5e-4], protocol="quick")
    _add_run(reg, "qvae", [0.9] * 6 + [1e-4], protocol="quick", model_set={"beta": 0.5})
    for fmt in ("png", "svg", "pdf"):
        out = tmp_path / f"compare.{fmt}"
        res = cli("figures", "compare", "--rows", "qvae,factorqvae", "--metrics", "D,InfoM,MSE", "--out", out)
        assert res.exit_code == 0, res.stderr
        assert res.stdout.strip() == str(out)
        assert "1 cell(s) have no runs" in res.stderr
    assert (tmp_path / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "compare.pdf").read_bytes()[:5] == b"%PDF-"
    assert "<svg" in (tmp_path / "compare.svg").read_text()
    res = cli("figures", "compare", "--rows", "qvae", "--set", "model.beta=0.5", "--out", tmp_path / "swept.png")
    assert res.exit_code == 0, res.stderr
    assert "no runs" not in res.stderr
    for args, needle in [(["--metrics", "Dee"], "unknown metric 'Dee'"),
                         (["--out", tmp_path / "c.gif"], "--out must end in .png, .svg or .pdf"),
                         (["--profile", "nosuch"], "unknown profile 'nosuch'"),
                         (["--protocol", "nosuch"], "unknown protocol 'nosuch'"),
                         (["--rows", "nosuch"], "table 1 has no row 'nosuch'")]:
        res = cli("figures", "compare", *args)
        assert res.exit_code == 2, (args, res.stderr)
        assert needle in res.stderr and "Traceback" not in res.stderr
