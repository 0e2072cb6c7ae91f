"""`fqvae` commands: score (not yet available)."""

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
