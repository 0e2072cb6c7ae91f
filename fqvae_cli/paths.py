"""Where fqvae keeps its files. Every location comes from an option, then an environment setting,
then a default under the workspace, so results do not depend on the working directory.

- workspace:  $FQVAE_HOME, default ~/.fqvae
- datasets:   --root, else $FQVAE_DATA, else <workspace>/data
- runs:       <workspace>/runs/<run id>/ (checkpoints, figures, matrices)
- registry:   --db URL, else $FQVAE_DB, else sqlite:///<workspace>/registry.db
"""

from __future__ import annotations

import os
from pathlib import Path


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
