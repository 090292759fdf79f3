"""`python -m costserve.cli`: the command line (schedules fire submits this way)."""

from costserve.cli import main

main()
