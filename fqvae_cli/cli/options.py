"""Options several commands share, declared once (typer builds each command's parameter from them anew)."""

from __future__ import annotations

import typer

DB_OPTION = typer.Option(None, "--db", show_default=False,
                         help="Registry database URL (default: `$FQVAE_DB`, else `sqlite:///WORKSPACE/registry.db`).")
RUN_HELP = "Run id, short id, unique id prefix, or name."
RUN_ARGUMENT = typer.Argument(..., help=RUN_HELP)
DEVICE_OPTION = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.")
