"""`fqvae score`: disentanglement metrics of any representation saved as arrays, with the published protocols."""

from __future__ import annotations

from pathlib import Path

import typer

from fqvae_cli.cli.options import DCI_ESTIMATOR_OPTION


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command(name="score")(score)


def score(
    codes: Path = typer.Option(..., "--codes", help="codes.npy: samples x latents (indices or values)."),
    factors: Path = typer.Option(..., "--factors", help="factors.npy: samples x factors, integer codes."),
    metrics: str = typer.Option(None, "--metrics", "-m", show_default=False,
                                help="Comma-separated: dci, infomec, mig, sap, modularity (with explicitness), irs, "
                                     "unsupervised, or all [default: dci,infomec, the paper's]."),
    protocol: str = typer.Option(None, "--protocol", help="Sample sizes of this experiments.yaml protocol "
                                 "[default: those in meta.json beside the codes, else paper]."),
    size: list[str] = typer.Option(None, "--size", metavar="NAME=N",
                                   help="Override one protocol size, e.g. --size sap_train=2000 (repeatable)."),
    discrete: bool = typer.Option(None, "--discrete/--continuous", show_default=False,
                                  help="How to treat the codes (default: discrete when they are all integers)."),
    dci_train: int = typer.Option(None, "--dci-train", help="DCI training rows (the first ones) [default: 10000]."),
    dci_test: int = typer.Option(None, "--dci-test", help="DCI test rows (the next ones) [default: 5000]."),
    infomec_n: int = typer.Option(None, "--infomec-n", help="InfoMEC rows (the first ones) [default: 10000]."),
    neighbors: int = typer.Option(None, "--neighbors", help="kNN neighbours of the continuous MI estimator "
                                  "(3 FactorQVAE, 10 original) [default: 3]."),
    seed: int = typer.Option(None, "--seed", help="Seed of the classifiers and the kNN estimator [default: 0]."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Parallel workers for the per-factor fits of DCI, SAP and "
                                                     "Explicitness (-1: all cores); the numbers do not depend on it."),
    save_matrices: Path = typer.Option(None, "--save-matrices", metavar="DIR",
                                       help="Write importance.npy, nmi.npy and their heatmap PNGs to DIR."),
    dci_estimator: str = DCI_ESTIMATOR_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the scores as one JSON object on stdout."),
) -> None:
    """Score a representation trained anywhere: DCI and InfoMEC by default; MIG, SAP, Modularity and
    Explicitness, IRS and the unsupervised scores on request (--metrics, all), each with
    disentanglement_lib's published protocol; DCI by --dci-estimator gbt (the paper's), rf or lasso.

    Rows are independent uniform samples of the factors. Every metric starts at row 0: DCI trains on the
    first --dci-train rows and tests on the next --dci-test; InfoMEC uses the first --infomec-n rows, MIG
    its first mig_n, SAP and Modularity their first *_train rows and the next *_test. The FactorVAE and
    BetaVAE scores hold factors fixed and encode new images: `fqvae evaluate RUN --metrics factor_vae`.

    Codes written by `fqvae encode` come with a meta.json beside them; its protocol sizes, seed, code
    kind and neighbours are the defaults then, so the numbers are `evaluate`'s.

    Example: `fqvae score --codes codes.npy --factors factors.npy --metrics all --jobs 2 --json`.
    """
    import json

    from fqvae_cli import console
    from fqvae_cli.errors import UsageError
    from fqvae_cli.inputs import check_seed
    from fqvae_cli.metrics import METRICS, prepare, score, score_steps

    meta = _encode_meta(codes)
    sizes = _sizes(protocol, meta, size)
    for flag, key, value in (("--dci-train", "dci_train", dci_train), ("--dci-test", "dci_test", dci_test),
                             ("--infomec-n", "infomec_n", infomec_n)):
        if value is not None:
            if value < 1:
                raise UsageError(f"{flag} must be at least 1, got {value}.")
            sizes[key] = value
    neighbors = neighbors if neighbors is not None else int(meta.get("n_neighbors", 3))
    seed = seed if seed is not None else int(meta.get("seed", 0))
    if discrete is None and "discrete" in meta:
        discrete = bool(meta["discrete"])
    if neighbors < 1:
        raise UsageError(f"--neighbors must be at least 1, got {neighbors}.")
    check_seed(seed)
    if jobs == 0 or jobs < -1:
        raise UsageError(f"--jobs must be a positive number of processes or -1 for all cores, got {jobs}.")
    if save_matrices is not None and save_matrices.exists() and not save_matrices.is_dir():
        raise UsageError(f"--save-matrices {save_matrices} is a file, not a folder.")
    if save_matrices is not None:
        from fqvae_cli.outputs import check_output

        for name in ("importance.npy", "importance.png", "nmi.npy", "nmi.png"):
            check_output(save_matrices / name, what="--save-matrices", stdout_ok=False)

    # Everything about the request and the arrays is checked once, by the library.
    job = prepare(_load(codes), _load(factors), discrete=discrete, sizes=sizes, metrics=_names(metrics),
                  seed=seed, jobs=jobs, n_neighbors=neighbors, names=(codes.name, factors.name), protocol=protocol,
                  interventions=False, dci_estimator=dci_estimator)
    z, s = job.z, job.s
    if job.inferred:
        how = ("codes are integer-valued: scored as discrete (--continuous to override)" if job.discrete
               else "codes are not integer-valued: scored as continuous")
    else:
        how = f"codes scored as {'discrete' if job.discrete else 'continuous'} (as asked)"
    if not as_json:
        console.info(f"{codes.name}: {z.shape[0]} rows x {z.shape[1]} latents; {factors.name}: "
                     f"{s.shape[1]} factors; metrics: {', '.join(job.metrics)}")
        console.info(how)
        left = [m for m, spec in METRICS.items() if spec.intervenes]
        if metrics and "all" in metrics.lower():
            console.info(f"{', '.join(left)} need the model (`fqvae evaluate RUN --metrics all`)")

    with console.progress("score", total=score_steps(job.n_factors, job.metrics), unit="step") as bar:
        result = score(job, bar)

    if save_matrices is not None:
        written = _save_matrices(save_matrices, result)
        if not as_json:
            console.info(f"wrote {', '.join(written) or 'nothing (no DCI or InfoMEC asked)'} to {save_matrices}")

    if as_json:
        typer.echo(json.dumps(result.values, indent=2))
    else:
        _print_table(result, z.shape[1])


def _names(metrics: str | None) -> list[str] | None:
    """--metrics as given (None: the defaults); the library reads and checks the names."""
    return None if metrics is None else [metrics]


def _sizes(protocol: str | None, meta: dict, overrides: list[str] | None) -> dict:
    """The protocol sizes: a named protocol's, else meta.json's over the paper protocol's; then --size."""
    from fqvae_cli.errors import UsageError
    from fqvae_cli.metrics import PROTOCOL_SIZES
    from fqvae_cli.runs.evaluation import protocol_sizes

    if protocol is not None:
        sizes = protocol_sizes(protocol)
    else:
        saved = meta.get("protocol_sizes")
        sizes = protocol_sizes("paper") | (saved if isinstance(saved, dict) else {})
    for item in overrides or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in PROTOCOL_SIZES:
            raise UsageError(f"--size takes NAME=N with NAME one of: {', '.join(PROTOCOL_SIZES)}; got '{item}'.")
        try:
            sizes[key] = int(value)
        except ValueError:
            raise UsageError(f"--size {key} needs a whole number, got '{value}'.") from None
    return sizes


def _load(path: Path):
    """One array from a .npy file, never unpickling anything."""
    import numpy as np

    from fqvae_cli.errors import DataError, NotFoundError

    if not path.exists():
        raise NotFoundError(f"{path} does not exist.")
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a .npy file.")
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic[:4] == b"PK\x03\x04":
        raise DataError(f"{path} is an .npz archive; save one 2-D array with numpy.save.")
    if magic != b"\x93NUMPY":
        raise DataError(f"{path} is not a readable .npy array of numbers (it does not start with the NumPy "
                        "header); save the array with numpy.save.")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path} is not a readable .npy array of numbers ({reason.rstrip('.')}).") from exc
    if not isinstance(arr, np.ndarray):  # an .npz archive holds several arrays
        arr.close()
        raise DataError(f"{path} is an .npz archive; save one 2-D array with numpy.save.")
    return arr


def _encode_meta(codes: Path) -> dict:
    """meta.json written by `fqvae encode` beside the codes, or {}."""
    import json

    meta = codes.with_name("meta.json")
    try:
        data = json.loads(meta.read_text()) if meta.is_file() else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_matrices(folder: Path, result) -> list[str]:
    import numpy as np

    from fqvae_cli.figures.plots import heatmap
    from fqvae_cli.files import atomic_path

    # Both heatmaps are drawn factors x latents, the layout of the paper's figures.
    shown = []
    if "dci" in result.details:
        importance = np.asarray(result.details["dci"].importance, dtype=np.float64)
        shown.append(("importance", importance, importance.T, "DCI importance (factors x latents)"))
    if "infomec" in result.details:
        nmi = np.asarray(result.details["infomec"].nmi, dtype=np.float64)
        shown.append(("nmi", nmi, nmi, "NMI (factors x latents)"))
    written = []
    for stem, matrix, drawn, title in shown:
        names = [f"factor {j}" for j in range(drawn.shape[0])]
        with atomic_path(folder / f"{stem}.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, matrix)
        with atomic_path(folder / f"{stem}.png") as tmp:
            heatmap(drawn, names, tmp, title=title, fmt="png")
        written += [f"{stem}.npy", f"{stem}.png"]
    return written


def _print_table(result, n_latents: int) -> None:
    from rich.table import Table

    from fqvae_cli import console
    from fqvae_cli.metrics import record

    table = Table(title=f"scores ({'discrete' if result.discrete else 'continuous'} codes)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in result.metrics:
        spec = record(name, result.dci_estimator)
        for key, label in spec.keys.items():
            value = result.values[key]
            table.add_row(label, f"{value} of {n_latents}" if key in spec.counts else f"{value:.4f}")
    console.out().print(table)
