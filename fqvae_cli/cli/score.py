"""`fqvae score`: DCI and InfoMEC of any representation saved as arrays, with the published protocol."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command(name="score")(score)


def score(
    codes: Path = typer.Option(..., "--codes", help="codes.npy: samples x latents (indices or values)."),
    factors: Path = typer.Option(..., "--factors", help="factors.npy: samples x factors, integer codes."),
    discrete: bool = typer.Option(None, "--discrete/--continuous", show_default=False,
                                  help="How to treat the codes (default: discrete when they are all integers)."),
    dci_train: int = typer.Option(None, "--dci-train", help="DCI training rows (the first ones) [default: 10000]."),
    dci_test: int = typer.Option(None, "--dci-test", help="DCI test rows (the next ones) [default: 5000]."),
    infomec_n: int = typer.Option(None, "--infomec-n", help="InfoMEC rows (the first ones) [default: 10000]."),
    neighbors: int = typer.Option(None, "--neighbors", help="kNN neighbours of the continuous MI estimator "
                                  "(3 FactorQVAE, 10 original) [default: 3]."),
    seed: int = typer.Option(None, "--seed", help="Seed of the classifiers and the kNN estimator [default: 0]."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Processes for the per-factor DCI fits (-1: all cores); "
                                                     "the numbers do not depend on it."),
    save_matrices: Path = typer.Option(None, "--save-matrices", metavar="DIR",
                                       help="Write importance.npy, nmi.npy and their heatmap PNGs to DIR."),
    as_json: bool = typer.Option(False, "--json", help="Print the scores as one JSON object on stdout."),
) -> None:
    """Score a representation trained anywhere: DCI (D, I, C) and InfoMEC (InfoM, InfoE, InfoC).

    Rows are independent uniform samples of the factors. DCI trains on the first --dci-train rows and
    tests on the next --dci-test; InfoMEC uses the first --infomec-n rows.

    Codes written by `fqvae encode` come with a meta.json beside them; its protocol sizes, seed, code
    kind and neighbours are the defaults then, so the numbers are `evaluate`'s.

    Example: `fqvae score --codes codes.npy --factors factors.npy --jobs 2 --json`.
    """
    import json

    from fqvae_cli import console
    from fqvae_cli.errors import UsageError
    from fqvae_cli.inputs import check_seed
    from fqvae_cli.metrics import SCORE_KEYS, score_all, score_steps
    from fqvae_cli.metrics.checks import (
        as_codes,
        as_factors,
        is_integer_valued,
        require_same_rows,
        require_varied,
    )

    meta = _encode_meta(codes)
    sizes = meta.get("protocol_sizes") or {}
    dci_train = dci_train if dci_train is not None else sizes.get("dci_train", 10_000)
    dci_test = dci_test if dci_test is not None else sizes.get("dci_test", 5_000)
    infomec_n = infomec_n if infomec_n is not None else sizes.get("infomec_n", 10_000)
    neighbors = neighbors if neighbors is not None else int(meta.get("n_neighbors", 3))
    seed = seed if seed is not None else int(meta.get("seed", 0))
    if discrete is None and "discrete" in meta:
        discrete = bool(meta["discrete"])
    for flag, value in (("--dci-train", dci_train), ("--dci-test", dci_test), ("--infomec-n", infomec_n),
                        ("--neighbors", neighbors)):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}.")
    check_seed(seed)
    if jobs == 0 or jobs < -1:
        raise UsageError(f"--jobs must be a positive number of processes or -1 for all cores, got {jobs}.")
    if save_matrices is not None and save_matrices.exists() and not save_matrices.is_dir():
        raise UsageError(f"--save-matrices {save_matrices} is a file, not a folder.")
    if save_matrices is not None:
        from fqvae_cli.outputs import check_output

        for name in ("importance.npy", "importance.png", "nmi.npy", "nmi.png"):
            check_output(save_matrices / name, what="--save-matrices", stdout_ok=False)

    z = as_codes(_load(codes), codes.name)
    s = as_factors(_load(factors), factors.name)
    require_same_rows(z, s, codes.name, factors.name)
    _require_rows(len(z), codes.name, dci_train, dci_test, infomec_n)
    require_varied(s, factors.name)
    if neighbors >= infomec_n:
        raise UsageError(f"--neighbors {neighbors} needs more than {neighbors} InfoMEC rows; it has {infomec_n} "
                         "(--infomec-n).")

    integer = is_integer_valued(z)
    if discrete is None:
        discrete = integer
        how = ("codes are integer-valued: scored as discrete (--continuous to override)" if integer
               else "codes are not integer-valued: scored as continuous")
    else:
        how = f"codes scored as {'discrete' if discrete else 'continuous'} (as asked)"
    if not as_json:
        console.info(f"{codes.name}: {z.shape[0]} rows x {z.shape[1]} latents; {factors.name}: "
                     f"{s.shape[1]} factors")
        console.info(how)

    with console.progress("score", total=score_steps(s.shape[1]), unit="step") as bar:
        result = score_all(z, s, discrete, dci_train, dci_test, infomec_n, seed=seed, jobs=jobs,
                           n_neighbors=neighbors, progress=bar)

    if save_matrices is not None:
        written = _save_matrices(save_matrices, result)
        if not as_json:
            console.info(f"wrote {', '.join(written)} to {save_matrices}")

    if as_json:
        typer.echo(json.dumps({k: result[k] for k in SCORE_KEYS}, indent=2))
    else:
        _print_table(result, z.shape[1])


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


def _require_rows(n: int, name: str, dci_train: int, dci_test: int, infomec_n: int) -> None:
    from fqvae_cli.errors import UsageError

    if n < dci_train + dci_test:
        raise UsageError(f"{name} has {n} rows but DCI needs {dci_train + dci_test} "
                         f"(--dci-train {dci_train} + --dci-test {dci_test}).")
    if n < infomec_n:
        raise UsageError(f"{name} has {n} rows but InfoMEC needs {infomec_n} (--infomec-n {infomec_n}).")


def _save_matrices(folder: Path, result: dict) -> list[str]:
    import numpy as np

    from fqvae_cli.figures.plots import heatmap
    from fqvae_cli.io import atomic_path

    # Both heatmaps are drawn factors x latents, the layout of the paper's figures.
    importance = np.asarray(result["importance"], dtype=np.float64)
    nmi = np.asarray(result["nmi"], dtype=np.float64)
    names = [f"factor {j}" for j in range(nmi.shape[0])]
    written = []
    for stem, matrix, shown, title in (
        ("importance", importance, importance.T, "DCI importance (factors x latents)"),
        ("nmi", nmi, nmi, "NMI (factors x latents)"),
    ):
        with atomic_path(folder / f"{stem}.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, matrix)
        with atomic_path(folder / f"{stem}.png") as tmp:
            heatmap(shown, names, tmp, title=title, fmt="png")
        written += [f"{stem}.npy", f"{stem}.png"]
    return written


def _print_table(result: dict, n_latents: int) -> None:
    from rich.table import Table

    from fqvae_cli import console

    table = Table(title=f"scores ({'discrete' if result['discrete'] else 'continuous'} codes)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("DCI disentanglement (D)", result["dci_d"]),
        ("DCI informativeness (I, test accuracy)", result["dci_i"]),
        ("DCI informativeness (train accuracy)", result["dci_i_train"]),
        ("DCI completeness (C)", result["dci_c"]),
        ("InfoM", result["infom"]),
        ("InfoE", result["infoe"]),
        ("InfoC", result["infoc"]),
    ]
    for label, value in rows:
        table.add_row(label, f"{value:.4f}")
    table.add_row("active latents", f"{result['active_latents']} of {n_latents}")
    console.out().print(table)
