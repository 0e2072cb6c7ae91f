"""`fqvae models`: the model zoo, each model's composition and its Table A.3 hyperparameters."""

import typer


def _num(v: object) -> str:
    """1e-4 rather than 0.0001: Table A.3 writes its weights as powers of ten."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if v == 0 or 0.01 <= abs(v) < 1e4:
        return f"{v:g}"
    mantissa, exp = f"{v:.3e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"


def _fmt(entry: dict | None) -> str:
    if entry is None:
        return "-"
    if not entry:
        return "none"
    return ", ".join(f"{k}={_num(v)}" for k, v in entry.items())


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""

    @app.command("models")
    def models(
        as_json: bool = typer.Option(False, "--json", help="Print the list as JSON on stdout."),
    ) -> None:
        """List every model: bottleneck, regularizers, encoder output width and Table A.3 hyperparameters
        per dataset ('-' where Table A.3 has no entry and the model's defaults apply)."""
        import json

        from fqvae_cli.data.catalog import DATASETS
        from fqvae_cli.experiments import load_experiments
        from fqvae_cli.models.zoo import describe_models

        columns_of = {ds.name: ds.hyperparameters for ds in DATASETS.values()}
        rows = describe_models(load_experiments().get("hyperparameters") or {}, columns_of)
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return

        from rich.table import Table

        from fqvae_cli.console import out

        zoo = Table(title="Model zoo", title_justify="left", pad_edge=False)
        for head in ("model", "paper name", "bottleneck", "enc out", "regularizers"):
            zoo.add_column(head, no_wrap=True)
        for row in rows:
            bottleneck = row["bottleneck"] + (f"\n{_fmt(row['defaults'])}" if row["defaults"] else "")
            zoo.add_row(row["name"], row["title"], bottleneck, row["encoder_output"],
                        "\n".join(row["regularizers"]) or "none")
        out().print(zoo)

        # One column per Table A.3 column; the datasets that share a column are named in the caption.
        columns: dict[str, list[str]] = {}
        for ds in DATASETS.values():
            columns.setdefault(ds.hyperparameters, []).append(ds.name)
        caption = "; ".join(f"{col}: {', '.join(names)}" for col, names in columns.items())
        hyper = Table(title="Table A.3 hyperparameters (experiments.yaml)", title_justify="left",
                      caption=f"columns -> datasets. {caption}. '-': not in Table A.3, model defaults apply.",
                      caption_justify="left", show_lines=True)
        hyper.add_column("model")
        for col in columns:
            hyper.add_column(col, overflow="fold")
        for row in rows:
            cells = [_fmt(row["hyperparameters"][names[0]]).replace(", ", "\n") for names in columns.values()]
            hyper.add_row(row["name"], *cells)
        out().print(hyper)
