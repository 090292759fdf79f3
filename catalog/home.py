"""The costserve home directory, shared by every layer (catalog is the one package all may import)."""

from __future__ import annotations

import os
from pathlib import Path


def costserve_home() -> Path:
    """The costserve home directory: `$COSTSERVE_HOME`, else `~/.costserve` (not created here)."""
    return Path(os.environ.get("COSTSERVE_HOME") or Path.home() / ".costserve").expanduser()
