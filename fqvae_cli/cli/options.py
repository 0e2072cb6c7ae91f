"""Options several commands share, declared once (typer builds each command's parameter from them anew)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from fqvae_cli.registry.store import Registry

DB_OPTION = typer.Option(None, "--db", show_default=False,
                         help="Registry database URL (default: `$FQVAE_DB`, else `sqlite:///WORKSPACE/registry.db`).")
RUN_HELP = "Run id, short id, unique id prefix, or name."
RUN_ARGUMENT = typer.Argument(..., help=RUN_HELP)
DEVICE_OPTION = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.")
DCI_ESTIMATOR_OPTION = typer.Option(
    "gbt", "--dci-estimator", help="How DCI's importances are estimated: gbt (gradient-boosted trees, "
    "disentanglement_lib and the paper), rf (QLAE/Tripod's random forest, seeded) or lasso (Eastwood & Williams); "
    "each is recorded under its own keys (docs/metrics.md).")


# The options that choose a paper table's cells, in one place: `fqvae table`, `fqvae figures compare` and
# `fqvae report` take the same ones and turn them into a Table with the same function, so a figure or a
# report shows exactly the cells the table prints for the same options.

PAPER_TABLE_OPT = typer.Option(
    "1", "--table", "--paper-table", "-t",
    help="A table of experiments.yaml: 1 (the paper's, all models), 2 (codebook design), field (every model "
         "of the zoo) or study_v1 (disentanglement_lib's grid).")
PROFILE_OPT = typer.Option("quick", "--profile", "-p", help="Which runs: quick (CPU, synth3d) or paper.")
DATASETS_OPT = typer.Option(None, "--datasets", "--dataset", "-d",
                            help="Datasets (columns, comma-separated); default the profile's.")
ROWS_OPT = typer.Option(None, "--rows", help="Only these rows (keys, comma-separated); a model outside the "
                        "paper's table (e.g. fsq) adds a row for it.")
SET_OPT = typer.Option(None, "--set", help="The setup the runs were trained with, as given to "
                       "`fqvae reproduce --set` (key=value).")
PROTOCOL_OPT = typer.Option(None, "--protocol",
                            help="Metric protocol of the numbers shown; default the profile's (quick: quick).")
KERNEL_FAMILY_OPT = typer.Option(None, "--kernel-family",
                                 help="Only runs trained in this kernel family, e.g. AMD/AVX2/1t (every start of "
                                      "the run; docs/provenance.md); the footer lists the families present.")


def split(values: list[str] | None) -> list[str] | None:
    """Repeated and comma-separated option values as one list (None when none were given)."""
    if not values:
        return None
    return [v for item in values for v in item.split(",") if v]


@dataclass(frozen=True)
class Cells:
    """Which cells of which table: what the shared options say, checked and resolved."""

    number: str
    profile: str
    datasets: list[str] | None
    rows: list[str] | None
    overrides: dict
    protocol: str
    kernel_family: str | None = None

    @classmethod
    def from_options(cls, paper_table: str, profile: str, datasets: list[str] | None, rows: list[str] | None,
                     overrides: list[str] | None, protocol: str | None,
                     kernel_family: str | None = None) -> Cells:
        """The protocol defaults to the one `--set eval.protocol=` names, else the profile's; an unknown
        profile or protocol is refused here, before any work."""
        from fqvae_cli.experiments import load_experiments, parse_overrides, profile_of
        from fqvae_cli.runs.evaluation import protocol_sizes

        extra = parse_overrides(overrides or [])
        prof = profile_of(load_experiments(), profile)
        if protocol is None:
            protocol = (extra.get("eval") or {}).get("protocol") or (prof.get("eval") or {}).get("protocol", "paper")
        protocol_sizes(protocol)  # an unknown protocol is an error, not an empty table
        return cls(paper_table, profile, split(datasets), split(rows), extra, protocol, kernel_family)

    def table(self, reg: Registry, *, metrics: list[str] | None = None, dci_estimator: str = "gbt") -> Any:
        """The Table these cells make from the registry (fqvae_cli.runs.tables.build_table)."""
        from fqvae_cli.runs.tables import build_table

        return build_table(reg, self.number, self.profile, datasets=self.datasets, protocol=self.protocol,
                           rows=self.rows, overrides=self.overrides, metrics=metrics,
                           kernel_family=self.kernel_family, dci_estimator=dci_estimator)
