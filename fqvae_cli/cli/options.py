"""Options several commands share, declared once (typer builds each command's parameter from them anew)."""

from __future__ import annotations

import typer

DB_OPTION = typer.Option(None, "--db", show_default=False,
                         help="Registry database URL (default: `$FQVAE_DB`, else `sqlite:///WORKSPACE/registry.db`).")
RUN_HELP = "Run id, short id, unique id prefix, or name."
RUN_ARGUMENT = typer.Argument(..., help=RUN_HELP)
DEVICE_OPTION = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.")
DCI_ESTIMATOR_OPTION = typer.Option(
    "gbt", "--dci-estimator", help="How DCI's importances are estimated: gbt (gradient-boosted trees, "
    "disentanglement_lib and the paper), rf (QLAE/Tripod's random forest, seeded) or lasso (Eastwood & Williams); "
    "each is recorded under its own keys (docs/metrics.md).")
