"""`fqvae encode`: a run's representation as .npy files that any metric library can read."""

from __future__ import annotations

from pathlib import Path

import typer

from fqvae_cli.cli.options import DB_OPTION, DEVICE_OPTION


def register(app: typer.Typer) -> None:
    app.command(name="encode")(encode)


def encode(
    run: str = typer.Argument(..., help="Run id, short id, prefix or name."),
    out: Path = typer.Option(..., "--out", help="Folder for codes.npy, factors.npy, indices.npy and meta.json."),
    protocol: str = typer.Option(None, "--protocol", help="Draw the rows this metric protocol scores "
                                 "[default: the run's own eval.protocol, as `evaluate`]."),
    n: int = typer.Option(None, "--n", min=1, help="Draw this many rows instead of a protocol's."),
    seed: int = typer.Option(None, "--seed", help="Sampling seed, 0 to 4294967295 (default the run's eval.seed, 0)."),
    checkpoint: int = typer.Option(None, "--checkpoint", help="Checkpoint step (default: last)."),
    device: str = DEVICE_OPTION,
    db: str = DB_OPTION,
) -> None:
    """Write the codes `evaluate` scores, with their factors, so other tools can score them.

    `fqvae score --codes DIR/codes.npy --factors DIR/factors.npy` then gives `evaluate`'s numbers for the
    same protocol and seed (it reads DIR/meta.json for the protocol sizes, seed and code kind).
    """
    from fqvae_cli.config import run_protocol
    from fqvae_cli.device import resolve_device
    from fqvae_cli.errors import UsageError
    from fqvae_cli.inputs import check_seed
    from fqvae_cli.outputs import check_output
    from fqvae_cli.registry.store import Registry
    from fqvae_cli.runs.evaluation import encode_run, write_encoding

    if protocol is not None and n is not None:
        raise UsageError("give --protocol or --n, not both.")
    if seed is not None:
        check_seed(seed)
    folder = Path(out).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {folder} is a file; give a folder.")
    reg = Registry(db)
    for name in ("codes.npy", "factors.npy", "indices.npy", "meta.json"):
        check_output(folder / name, reg, stdout_ok=False)
    if n is None and protocol is None:
        protocol = run_protocol(reg.get_run(run).config)
    enc = encode_run(reg, run, resolve_device(device), protocol=protocol, n=n, seed=seed, step=checkpoint)
    for path in write_encoding(enc, folder):
        typer.echo(str(path))
