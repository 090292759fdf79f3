"""The end of a log file, for a one-line message about why a process stopped."""

from __future__ import annotations

from pathlib import Path


def last_line(path: Path, tail_bytes: int = 4096, width: int = 200) -> str:
    """The last non-empty line of the log file at `path` (at most `width` characters, read from its last `tail_bytes`
    bytes), or "" when there is none or it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - tail_bytes))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:width] if lines else ""
