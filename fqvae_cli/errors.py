"""Typed exceptions. The library raises these; the CLI turns each into one sentence and an exit code."""


class FqvaeError(Exception):
    """Base of every error that the CLI reports as one sentence (no traceback unless --debug)."""

    exit_code = 1


class UsageError(FqvaeError):
    """Bad option values or arguments."""

    exit_code = 2


class ConfigError(UsageError):
    """An invalid configuration: unknown key, bad value, unknown name."""


class NotFoundError(FqvaeError):
    """A run, dataset, checkpoint or file that does not exist."""


class DataError(FqvaeError):
    """A dataset source or prepared store that is malformed."""


class DownloadError(FqvaeError):
    """A download that cannot go on: no network, an HTTP error, a full disk, another download running."""


class RegistryError(FqvaeError):
    """The results registry cannot be opened or written."""


class CheckpointError(FqvaeError):
    """A checkpoint that is missing, corrupted or does not match its recorded hash."""


class StorageError(FqvaeError):
    """A file could not be written (disk full, file too large, no permission); what existed is kept."""


class TrainingError(FqvaeError):
    """Training stopped because the run cannot continue (for example a non-finite loss)."""


class Interrupted(FqvaeError):
    """The user (Ctrl-C) or the scheduler (SIGTERM) stopped a job; its state was saved."""

    exit_code = 130


def side_job_failure(exc: BaseException) -> str:
    """Why a side job (a snapshot, codebook health, a tracker) failed, in words: the system's own reason
    (permission denied, not a directory, no space left) with the path it names, or the error's message."""
    if isinstance(exc, FqvaeError):
        return str(exc).rstrip(".")
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return f"{type(exc).__name__}: {exc}"
