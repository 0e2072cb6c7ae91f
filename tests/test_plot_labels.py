"""Figures draw user-typed labels as they are written: a run named `$\\foo{$` (matplotlib mathtext
syntax that does not parse) is a legend entry and a title in `fqvae runs plot`, not an error."""

from __future__ import annotations

from fqvae_cli.registry.store import Registry


def test_a_run_name_with_dollars_is_drawn_as_written(cli, workspace, tmp_path):
    with Registry() as reg:
        shorts = []
        for name in ("$\\foo{$", "costs $5"):
            run = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=len(shorts), config={},
                                 name=name)
            reg.log_metrics(run.id, [("loss/recon", 1.0 / (s + 1), s, "train") for s in range(5)])
            reg.transition(run.id, "finished")
            shorts.append(run.short_id)
    out = tmp_path / "curves.svg"
    res = cli("runs", "plot", *shorts, "--out", out)
    assert res.exit_code == 0, res.stderr
    assert res.stderr == "" and res.stdout.strip() == str(out)
    svg = out.read_text()
    # the text of the title and of the legend, each character as written (no math fonts)
    assert "$\\foo{$, costs $5" in svg and "costs $5" in svg
