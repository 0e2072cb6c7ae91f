"""`fqvae db`: where the registry is, its schema revision, and upgrades."""

from __future__ import annotations

import typer

from fqvae_cli.cli.options import DB_OPTION

db_app = typer.Typer(
    help="Operate the results registry database: its location, schema revision and upgrades.",
    no_args_is_help=True,
)


@db_app.command("path")
def path(db: str = DB_OPTION) -> None:
    """Print the registry URL (password hidden) and, for SQLite, the file."""
    from fqvae_cli import paths
    from fqvae_cli.registry import migrate

    url = paths.registry_url(db)
    typer.echo(migrate.display_url(url))
    file = migrate.sqlite_path(url)
    if file is not None:
        state = f"{file.stat().st_size} bytes" if file.exists() else "not created yet"
        typer.echo(f"file: {file} ({state})")


@db_app.command("current")
def current(db: str = DB_OPTION) -> None:
    """Print the registry's schema revision and whether it is the one this fqvae needs."""
    from fqvae_cli import paths
    from fqvae_cli.registry import migrate
    from fqvae_cli.registry.schema import HEAD, REVISIONS

    url = paths.registry_url(db)
    rev = migrate.current_revision(url)
    where = migrate.display_url(url)
    if rev is None:
        typer.echo(f"{where}: no schema yet; it is created at revision {HEAD} on first use.")
    elif rev == HEAD:
        typer.echo(f"{where}: revision {rev} (head, up to date)")
    elif rev in REVISIONS:
        typer.echo(f"{where}: revision {rev}, behind head {HEAD}; run `fqvae db upgrade`.")
    else:
        typer.echo(f"{where}: revision {rev}, newer than this fqvae (head {HEAD}); upgrade fqvae.")


@db_app.command("upgrade")
def upgrade(db: str = DB_OPTION) -> None:
    """Create the registry, or upgrade it to this fqvae's schema (SQLite: after a backup copy)."""
    from fqvae_cli import paths
    from fqvae_cli.registry import migrate

    url = paths.registry_url(db)
    result = migrate.upgrade(url)
    where = migrate.display_url(url)
    if result.before is None:
        typer.echo(f"{where}: created at revision {result.after}")
    elif result.before == result.after:
        typer.echo(f"{where}: already at revision {result.after}")
    else:
        typer.echo(f"{where}: upgraded from revision {result.before} to {result.after}")
    if result.backup is not None:
        typer.echo(f"backup of the previous state: {result.backup}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(db_app, name="db")
