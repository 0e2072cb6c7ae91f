"""`fqvae evaluate`: disentanglement metrics (default DCI and InfoMEC) and MSE of trained runs with a
published protocol."""

from __future__ import annotations

import typer

from fqvae_cli.cli.options import DB_OPTION, DCI_ESTIMATOR_OPTION, DEVICE_OPTION


def register(app: typer.Typer) -> None:
    app.command(name="evaluate")(evaluate)
    app.command(name="udr")(udr)


def evaluate(
    run: str = typer.Argument(None, help="Run id, short id, prefix or name. Omit with --all."),
    protocol: str = typer.Option(None, "--protocol",
                                 help="paper (DCI 10k/5k, InfoMEC 10k) or quick (DCI 2k/1k, InfoMEC 10k); every "
                                      "size: experiments.yaml `protocols` [default: each run's own eval.protocol: "
                                      "quick for the quick profile]."),
    metrics: str = typer.Option(None, "--metrics", "-m", show_default=False,
                                help="Comma-separated: dci, infomec, mig, sap, modularity, factor_vae, beta_vae, "
                                     "irs, unsupervised, or all [default: dci,infomec, the paper's]."),
    checkpoint: int = typer.Option(None, "--checkpoint", help="Evaluate the checkpoint of this step (default: last)."),
    jobs: int = typer.Option(2, "--jobs", "-j", help="Parallel workers for the per-factor fits of DCI, SAP and "
                                                     "Explicitness (same numbers as 1)."),
    seed: int = typer.Option(None, "--seed", help="Sampling seed, 0 to 4294967295 (default the run's eval.seed, 0)."),
    device: str = DEVICE_OPTION,
    all_runs: bool = typer.Option(False, "--all", help="Evaluate every finished run (see --missing)."),
    missing: bool = typer.Option(True, "--missing/--again",
                                 help="With --all: only runs without these metrics for the protocol (default)."),
    model: str = typer.Option(None, "--model", help="With --all: only this model."),
    dataset: str = typer.Option(None, "--dataset", help="With --all: only this dataset."),
    dci_estimator: str = DCI_ESTIMATOR_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the numbers as JSON on stdout."),
    db: str = DB_OPTION,
) -> None:
    """Evaluate runs and record DCI (D, I, C), InfoMEC (InfoM, InfoE, InfoC) and MSE in the registry; with
    --metrics also MIG, SAP, Modularity/Explicitness and the FactorVAE and BetaVAE scores, each under the
    protocol's sizes and disentanglement_lib's published settings (docs/metrics.md).

    Examples: `fqvae evaluate 3fa2c1d9`, `fqvae evaluate --all`, `fqvae evaluate RUN --protocol quick
    --metrics all`.
    """
    import json

    from fqvae_cli.device import resolve_device
    from fqvae_cli.errors import UsageError
    from fqvae_cli.inputs import check_seed
    from fqvae_cli.metrics import parse_metrics, record, require_sizes
    from fqvae_cli.registry.store import Registry
    from fqvae_cli.runs.evaluation import evaluate_run, protocol_sizes
    from fqvae_cli.runs.sweep import runs_to_evaluate

    if jobs < 1:
        raise UsageError("--jobs must be at least 1.")
    if seed is not None:
        check_seed(seed)
    chosen = parse_metrics(metrics)
    if protocol is not None:
        require_sizes(protocol_sizes(protocol), chosen, protocol)
    keys = [k for m in chosen for k in record(m, dci_estimator).keys]
    reg = Registry(db)
    dev = resolve_device(device)
    if all_runs == (run is not None):
        raise UsageError("give either a RUN or --all.")
    todo = runs_to_evaluate(reg, ref=None if all_runs else run, keys=keys, protocol=protocol, checkpoint=checkpoint,
                            model=model, dataset=dataset, missing=missing)
    refs = [ref for ref, _ in todo]
    out = {}
    for ref, wanted in todo:
        require_sizes(protocol_sizes(wanted), chosen, wanted)
        out[ref] = evaluate_run(reg, ref, dev, protocol=wanted, step=checkpoint, jobs=jobs, seed=seed,
                                metrics=chosen, dci_estimator=dci_estimator)
        if not as_json:
            _print(ref, out[ref])
    if as_json:
        typer.echo(json.dumps(out[refs[0]] if len(refs) == 1 and not all_runs else out, indent=2))
    elif all_runs and not refs:
        typer.echo("nothing to evaluate: every finished run has these metrics for its protocol.")


def _print(ref: str, r: dict) -> None:
    from fqvae_cli.metrics import DCI_ESTIMATORS, METRICS, MSE_SCALE, record

    parts = [f"{title} {r[key]:.3f}" for m in METRICS for e in DCI_ESTIMATORS
             for key, title in record(m, e).columns.items() if key in r and (m == "dci" or e == "gbt")]
    typer.echo(f"{ref}: " + "  ".join(parts) + f"  MSE x1e4 {r['mse'] * MSE_SCALE:.2f}")


def udr(
    run: str = typer.Argument(..., help="Any run of the setting: every finished seed of its setting is scored."),
    method: str = typer.Option("lasso", "--method", help="lasso or spearman (Duan et al.'s two variants)."),
    protocol: str = typer.Option("paper", "--protocol", help="The draw whose first --points images are encoded."),
    points: int = typer.Option(1000, "--points", help="Images every run encodes (disentanglement_lib: 1000)."),
    seed: int = typer.Option(None, "--seed", help="Sampling seed (default each run's eval.seed, 0)."),
    device: str = DEVICE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print {run: score} as JSON on stdout."),
    db: str = DB_OPTION,
) -> None:
    """UDR (Duan et al. 2020): score every run of RUN's setting (a table cell: same model, data and training
    settings, any seed) by how well its representation agrees with the other seeds'; records
    `udr_lasso` (or `udr_spearman`) per run. Needs at least two finished seeds.

    Example: `fqvae udr 3fa2c1d9 --method spearman`.
    """
    import json

    from fqvae_cli.device import resolve_device
    from fqvae_cli.inputs import check_seed
    from fqvae_cli.registry.store import Registry
    from fqvae_cli.runs.evaluation import udr_cell

    if seed is not None:
        check_seed(seed)
    scores = udr_cell(Registry(db), run, resolve_device(device), protocol=protocol, points=points, method=method,
                      seed=seed, show_progress=not as_json)
    if as_json:
        typer.echo(json.dumps(scores, indent=2))
    else:
        for ref, value in scores.items():
            typer.echo(f"{ref}: UDR ({method}) {value:.3f}")
