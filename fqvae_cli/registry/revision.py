"""Which code a run was trained with: the git commit of the checkout, or $FQVAE_CODE_REVISION."""

from __future__ import annotations

import functools
import os
import re
import subprocess
from pathlib import Path


@functools.lru_cache(maxsize=1)
def code_revision() -> str | None:
    """The git commit of the running code (with -dirty for uncommitted changes), or $FQVAE_CODE_REVISION
    for installs without a checkout; None when neither is known."""
    env = os.environ.get("FQVAE_CODE_REVISION")
    if env:
        return env[:64]
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    rev = head.stdout.strip()
    if head.returncode or not re.fullmatch(r"[0-9a-f]{40}", rev):
        return None
    return rev + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
