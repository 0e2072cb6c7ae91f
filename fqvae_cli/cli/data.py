"""`fqvae data`: prepare ground-truth datasets, render the built-in one, list, describe and look."""

from pathlib import Path

import typer

from fqvae_cli.data.catalog import DATASETS  # light: names and facts only, for the help texts

data_app = typer.Typer(
    help=(
        "Ground-truth datasets. `synth3d` (a procedural Shapes3D, 480,000 images at 32x32) is built in and "
        "rendered on first use; the others (shapes3d, mpi3d, isaac3d, dsprites and its variants, cars3d, "
        "smallnorb, falcor3d, ...) are fetched, checked and converted once with "
        "`fqvae data download NAME`, or converted from a file you have with `fqvae data prepare NAME --source "
        "PATH`. Datasets live under --root, else $FQVAE_DATA, else ~/.fqvae/data."
    ),
    no_args_is_help=True,
)

# Help text is markdown: a <workspace> placeholder would vanish as an HTML tag (and read as "/data").
_ROOT = typer.Option(None, "--root", help="Data root (default: $FQVAE_DATA, else `WORKSPACE/data`, WORKSPACE "
                                          "being $FQVAE_HOME or ~/.fqvae).")
_NAME_HELP = "Dataset: " + ", ".join(DATASETS) + "."
_DOWNLOAD_HELP = "Dataset: " + ", ".join(n for n, s in DATASETS.items() if s.download) + " (--list shows them)."


def _summary(ds) -> str:
    factors = ", ".join(f"{n}={s}" for n, s in zip(ds.space.names, ds.space.sizes, strict=True))
    return f"{len(ds):,} images {ds.image_size}x{ds.image_size}; factors {factors}"


def _parse_sizes(text: str | None) -> list[int] | None:
    from fqvae_cli.errors import UsageError

    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--factor-sizes takes comma-separated integers such as 4,4,2,3,3,40,40, "
                         f"not '{text}'.") from None


@data_app.command("prepare")
def prepare(
    name: str = typer.Argument(..., help=_NAME_HELP),
    source: Path | None = typer.Option(None, "--source", help="The official file (or folder) to convert."),
    root: Path | None = _ROOT,
    force: bool = typer.Option(False, "--force", help="Replace an existing prepared dataset."),
    grid: str | None = typer.Option(None, "--grid", help="synth3d only: official (480,000) or small (648)."),
    factor_sizes: str | None = typer.Option(
        None, "--factor-sizes", help="mpi3d only: the 7 factor sizes of a non-standard layout, e.g. 2,2,1,1,1,4,4."),
) -> None:
    """Convert a source file once into the store (memory-mapped uint8 images, factor codes, meta.json)."""
    from fqvae_cli.console import info
    from fqvae_cli.data.store import prepare as do_prepare

    ds, written = do_prepare(name, source, root=root, force=force, grid=grid,
                             factor_sizes=_parse_sizes(factor_sizes))
    for note in ds.meta.get("notes", []) if written else []:
        info(f"note: {note}")
    if written:
        typer.echo(f"prepared {ds.name}: {_summary(ds)}\n  at {ds.path}")
    else:
        typer.echo(f"{ds.name} is already prepared from the same source: {_summary(ds)}\n  at {ds.path} "
                   f"(--force rebuilds it)")


@data_app.command("download")
def download(
    name: str | None = typer.Argument(None, help=_DOWNLOAD_HELP),
    root: Path | None = _ROOT,
    url: list[str] | None = typer.Option(None, "--url", help="Fetch from this URL instead of the catalog's sources "
                                                             "(a mirror, a local server); repeat it for several, "
                                                             "tried in order. Drops the catalog's size and hash."),
    sha256: str | None = typer.Option(None, "--sha256", help="Refuse a file whose sha256 is not this one."),
    no_prepare: bool = typer.Option(False, "--no-prepare", help="Only download and verify the file."),
    keep_source: bool = typer.Option(False, "--keep-source", help="Keep the downloaded file after preparing."),
    force: bool = typer.Option(False, "--force", help="Download and prepare again a dataset already prepared."),
    max_bytes: int | None = typer.Option(None, "--max-bytes", help="Never read more than this many bytes (default: "
                                         "the file's size, else 1.25 x the catalog's approximate size)."),
    list_: bool = typer.Option(False, "--list", help="List every downloadable dataset: size, digest status, "
                                                      "sources, and whether it is prepared here."),
    as_json: bool = typer.Option(False, "--json", help="With --list: print JSON."),
) -> None:
    """Download a dataset's official file, check its size and hash, and prepare it. Each source of the
    catalog (the official host, then mirrors) is tried in turn, the same digest enforced whichever answers.
    An interrupted download resumes where it stopped when run again. docs/datasets.md says where every
    file and hash comes from."""
    from fqvae_cli.data.download import download as do_download
    from fqvae_cli.errors import UsageError
    from fqvae_cli.files import fmt_bytes

    if list_:
        _print_download_list(root, as_json)
        return
    if name is None:
        raise UsageError("name a dataset to download (`fqvae data download --list` shows them).")
    result = do_download(name, root=root, url=url or None, sha256=sha256, prepare=not no_prepare,
                         keep_source=keep_source, force=force, max_bytes=max_bytes)
    if result.already_prepared:
        typer.echo(f"{name} is already prepared at {result.dataset.path}; nothing downloaded (--force downloads "
                   f"and prepares it again)")
        return
    assert result.hashes is not None
    size = result.dataset.meta["source"]["size"] if result.dataset else result.file.stat().st_size
    verb = "using the file downloaded earlier" if result.reused else "downloaded"
    typer.echo(f"{verb} from {result.url} ({fmt_bytes(size)})\n  sha256 {result.hashes['sha256']}: {result.check}")
    if result.dataset is not None:
        typer.echo(f"prepared {name}: {_summary(result.dataset)}\n  at {result.dataset.path}")
    if result.file is not None:
        tail = f"; prepare it with `fqvae data prepare {name} --source {result.file}`" if no_prepare else ""
        typer.echo(f"kept {result.file}{tail}")


def _print_download_list(root: Path | None, as_json: bool) -> None:
    import json

    from fqvae_cli.data.download import download_rows

    rows = download_rows(root)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        digest = r["digest"] + (f" ({r['algorithm']})" if r["algorithm"] else "")
        typer.echo(f"{r['name']}: {r['size']}, digest {digest}, {'prepared here' if r['prepared'] else 'not prepared'}")
        for i, src in enumerate(r["sources"], 1):
            typer.echo(f"  {i}. {src}")
        for file, sources in r["companions"].items():
            typer.echo(f"  with {file}: " + ", ".join(sources))


@data_app.command("synth")
def synth(
    out: Path = typer.Option(..., "--out", help="The .h5 file to write (layout of 3dshapes.h5)."),
    image_size: int = typer.Option(64, "--image-size", help="32 or 64."),
    grid: str = typer.Option("official", "--grid", help="official (480,000 images) or small (648)."),
    compress: bool = typer.Option(False, "--compress", help="gzip-chunked, like the official file (slower)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Render the procedural Shapes3D into a file in the 3dshapes.h5 layout (images uint8, labels values),
    which `fqvae data prepare shapes3d --source FILE` reads like the real one."""
    from fqvae_cli.data.synthetic import IMAGE_SIZES, synth_space, write_h5
    from fqvae_cli.errors import UsageError
    from fqvae_cli.outputs import check_output

    if image_size not in IMAGE_SIZES:
        raise UsageError(f"--image-size must be one of {', '.join(map(str, IMAGE_SIZES))}, got {image_size}.")
    space = synth_space(grid)
    out = check_output(out, stdout_ok=False)
    if out.suffix.lower() not in (".h5", ".hdf5"):
        raise UsageError(f"--out should name an .h5 file, not '{out.name}'.")
    if out.exists() and not force:
        raise UsageError(f"{out} already exists; pass --force to overwrite it.")
    write_h5(out, image_size=image_size, grid=grid, compress=compress)
    typer.echo(f"wrote {out}: {space.size:,} images {image_size}x{image_size}, labels "
               f"{'x'.join(map(str, space.sizes))} ({out.stat().st_size / 1e6:,.1f} MB)")


@data_app.command("list")
def list_(
    root: Path | None = _ROOT,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Every dataset fqvae knows: whether it is prepared, its download size and whether a hash is pinned."""
    import json

    from fqvae_cli.data.store import list_datasets

    rows = list_datasets(root)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    from fqvae_cli.console import out
    from fqvae_cli.files import fmt_bytes

    table = Table(title="Datasets")
    for head in ("name", "status", "images", "size", "factors", "download", "hash", "path"):
        table.add_column(head)
    for r in rows:
        if r.get("error"):
            status = "[red]damaged[/red]"
        elif r["prepared"]:
            status = "[green]prepared[/green]"
        else:
            status = "built on first use" if r["built_in"] else "not prepared"
        dl = r.get("download")
        size = "" if dl is None else ("" if dl["exact"] else "~") + fmt_bytes(dl["bytes"])
        pinned = "" if dl is None else (f"{dl['algorithm']} pinned" if dl["hash_pinned"] else
                                        f"{dl['algorithm']} reported" if dl["algorithm"] else "none published")
        table.add_row(r["name"], status, f"{r['n_images']:,}" if r["prepared"] else "",
                      f"{r['image_size']}px" if r["prepared"] else "",
                      "x".join(map(str, r["factor_sizes"])) if r["prepared"] else "", size, pinned, r["path"])
    out().print(table)


@data_app.command("info")
def info_(
    name: str = typer.Argument(..., help=_NAME_HELP),
    root: Path | None = _ROOT,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Describe a prepared dataset: factors, values, source, split sizes (synth3d is built if needed)."""
    import json

    from fqvae_cli.data.store import open_dataset

    d = open_dataset(name, root).summary()
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    from rich.table import Table

    from fqvae_cli.console import out

    src = d["source"] or {}
    out().print(f"[bold]{d['name']}[/bold]: {d['n_images']:,} images {d['image_size']}x{d['image_size']}, "
                f"{d['disk_bytes'] / 1e6:,.1f} MB at {d['path']}")
    out().print(f"source: {src.get('name')}" + (f" (sha256 {src['sha256'][:16]}...)" if src.get("sha256") else "")
                + (f", downloaded from {src['url']}" if src.get("url") else "") + f"; prepared {d['created']}")
    out().print("split: " + ", ".join(f"{k} {v:,}" for k, v in d["split"].items()))
    for note in d["notes"]:
        out().print(f"note: {note}")
    table = Table()
    for head in ("factor", "size", "values"):
        table.add_column(head)
    for n, s, v in zip(d["factor_names"], d["factor_sizes"], d["factor_values"], strict=True):
        shown = [f"{x:g}" for x in v] if len(v) <= 8 else [f"{v[0]:g}", f"{v[1]:g}", "...", f"{v[-1]:g}"]
        table.add_row(n, str(s), ", ".join(shown))
    out().print(table)


@data_app.command("show")
def show(
    name: str = typer.Argument(..., help=_NAME_HELP),
    out_path: Path = typer.Option(..., "--out", help="The PNG to write (- for standard output)."),
    root: Path | None = _ROOT,
    seed: int = typer.Option(0, "--seed", help="Chooses the combination the other factors are held at."),
    columns: int = typer.Option(15, "--columns", help="Most values shown per factor."),
) -> None:
    """Write a contact sheet: one row per factor, that factor varied, the others fixed."""
    from fqvae_cli.data.sheet import contact_sheet
    from fqvae_cli.data.store import open_dataset
    from fqvae_cli.errors import UsageError
    from fqvae_cli.outputs import check_output, writing

    target = check_output(out_path, data_root=root)
    if target is not None and target.suffix.lower() != ".png":
        raise UsageError(f"the contact sheet is a PNG; give --out a .png name, not '{target.name}'.")
    from fqvae_cli.inputs import check_seed

    check_seed(seed)
    ds = open_dataset(name, root)
    with writing(target) as tmp:
        contact_sheet(ds, tmp, seed=seed, max_columns=columns)
    if target is not None:
        typer.echo(f"wrote {target}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(data_app, name="data")
