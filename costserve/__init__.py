"""costserve: batch LLM inference on the cheapest GPU fleet that meets a deadline, quality and budget.

From Python: `costserve.plan(...)` returns the cheapest fleet's Plan, `costserve.submit(...)` a Run
with `.wait()`, `.results()`, `.report()` (see costserve/api.py). They are imported on first use,
so `import costserve` and `costserve --help` stay fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Run", "__version__", "plan", "submit"]


def __getattr__(name: str) -> Any:
    if name in ("plan", "submit", "Run"):
        from costserve import api

        return getattr(api, name)
    raise AttributeError(f"module 'costserve' has no attribute {name!r}")
