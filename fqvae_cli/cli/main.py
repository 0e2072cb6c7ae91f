"""Entry point of the `fqvae` command."""

from __future__ import annotations

import importlib
import sys

import typer

from fqvae_cli import __version__

app = typer.Typer(
    name="fqvae",
    help=(
        "Train, evaluate and compare disentanglement models (FactorQVAE and the baselines of the paper), "
        "with every run recorded in a results registry.\n\n"
        "Start with `fqvae reproduce --paper-table 1 --profile quick` (CPU-sized), or "
        "`fqvae train --model factorqvae` for one run."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",
)

# Modules under fqvae_cli.cli, each with `register(app)`. Their order is the order in --help.
COMMAND_MODULES = [
    "train",
    "evaluate",
    "figures",
    "table",
    "sweep",
    "score",
    "data",
    "models",
    "runs",
    "db",
]

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fqvae {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    _state["debug"] = debug
    from fqvae_cli.console import log_interval

    log_interval()  # environment settings are checked before any command starts work


for _name in COMMAND_MODULES:
    importlib.import_module(f"fqvae_cli.cli.{_name}").register(app)


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def _from_interrupt(exc: BaseException) -> bool:
    """Whether this exit is typer's translation of a KeyboardInterrupt (Ctrl-C, or SIGTERM through
    fqvae_cli.signals) into a silent exit 130: its cause or context chain holds the interrupt."""
    seen = exc.__cause__ or exc.__context__
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _stopped(argv: list[str] | None) -> None:
    """One sentence for a command stopped by a signal, and the exit status that names the signal."""
    from fqvae_cli import signals

    words = [a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("-")][:2]
    what = f"`fqvae {' '.join(words)}`" if words else "fqvae"
    _error(f"{signals.stopped_by()} stopped {what} before it finished; nothing it was writing was kept "
           "half-written.")
    sys.exit(signals.interrupted_exit_code())


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; library errors become one sentence on stderr and a non-zero exit code."""
    from fqvae_cli import signals
    from fqvae_cli.errors import FqvaeError, Interrupted

    if "--debug" in (argv if argv is not None else sys.argv[1:]):
        _state["debug"] = True
    previous = signals.install()  # SIGTERM unwinds like Ctrl-C, and exits 143
    try:
        app(args=argv, prog_name="fqvae")
    except SystemExit as exc:
        if exc.code == 130 and _from_interrupt(exc):
            _stopped(argv)
        raise
    except FqvaeError as exc:
        if _state["debug"]:
            raise
        _error(str(exc))
        sys.exit(signals.interrupted_exit_code() if isinstance(exc, Interrupted) else exc.exit_code)
    except KeyboardInterrupt:
        if _state["debug"]:
            raise
        _stopped(argv)
    except Exception as exc:  # noqa: BLE001 - the last line of defence for the one-sentence rule
        if _state["debug"]:
            raise
        _error(f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
        sys.exit(1)
    finally:
        signals.restore(previous)
