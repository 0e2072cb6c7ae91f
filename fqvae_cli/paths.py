"""Where fqvae keeps its files. Every location comes from an option, then an environment setting,
then a default under the workspace, so results do not depend on the working directory.

- workspace:  $FQVAE_HOME, default ~/.fqvae
- datasets:   --root, else $FQVAE_DATA, else <workspace>/data
- runs:       <workspace>/runs/<run id>/ (checkpoints, figures, matrices)
- registry:   --db URL, else $FQVAE_DB, else sqlite:///<workspace>/registry.db (and, for a SQLite URL,
              its file: what every output check protects)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from fqvae_cli.errors import RegistryError


def workspace() -> Path:
    env = os.environ.get("FQVAE_HOME")
    return Path(env).expanduser().resolve() if env else Path.home() / ".fqvae"


def data_root(override: Path | str | None = None) -> Path:
    if override:
        return Path(override).expanduser().resolve()
    env = os.environ.get("FQVAE_DATA")
    return Path(env).expanduser().resolve() if env else workspace() / "data"


def runs_root() -> Path:
    return workspace() / "runs"


def registry_url(override: str | None = None) -> str:
    if override:
        return override
    env = os.environ.get("FQVAE_DB")
    if env:
        return env
    return f"sqlite:///{workspace() / 'registry.db'}"


def parse_url(url: str) -> Any:
    """A sqlalchemy URL; a bare postgresql:// means the psycopg 3 driver that fqvae installs."""
    try:
        u = make_url(url)
    except ArgumentError as exc:
        raise RegistryError(f"'{url}' is not a database URL (expected sqlite:///FILE or "
                            "postgresql+psycopg://USER@HOST/DB).") from exc
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u


def display_url(url: str) -> str:
    """The URL as the user typed it, for messages, with any password masked (***). Re-rendering it
    through SQLAlchemy would percent-encode it (sqlite:///:memory: would read sqlite:///%3Amemory%3A)."""
    try:
        parsed = parse_url(url)
    except RegistryError:
        return url
    if parsed.password is None:
        return url
    masked, n = re.subn(r"^([^:/?#]+://[^:@/?#]*:)[^@/?#]*@", r"\1***@", url, count=1)
    return masked if n else parsed.render_as_string(hide_password=True)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for other engines and in-memory databases."""
    u = parse_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database).expanduser().resolve()


def is_sqlite(url: str) -> bool:
    return parse_url(url).get_backend_name() == "sqlite"
