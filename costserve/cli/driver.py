"""`python -m costserve.cli.driver ORDER`: the driver process of a spawned submit (run/spawn.py).

It reads the typed order, then runs it exactly as `costserve submit --yes --json` would: the
`created` and `ended` JSON lines on stdout, human output on stderr, the exit code of the run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from costserve.cli.output import fail, json_mode, one_line_errors


def main(order_file: str) -> int:
    """Drive the order in `order_file`; the exit code (named errors: their one line on stderr and their code)."""
    from costserve.cli.submit_view import submit_here
    from costserve.config import load_settings
    from costserve.run.spawn import read_order

    with json_mode(), one_line_errors():
        order = read_order(Path(order_file))
        return submit_here(order.request, load_settings(), None, True, order.dry_run, True, order.output_dir)
    return 2  # one_line_errors exits first; here for the type checker


if __name__ == "__main__":
    import typer

    if len(sys.argv) != 2:
        fail("usage: python -m costserve.cli.driver ORDER_FILE")
    try:
        sys.exit(main(sys.argv[1]))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
