"""The files a submit will write, checked before anything runs: never the input, never a directory, never each other.

A run writes its results file and its error file only at its end, after the whole batch has
run; a path that cannot be written then (a directory, a missing directory) or that would
destroy an input (the job file, an earlier submit's results it carries over) is refused here,
in one line, before the plan is even made. The one output that may be an input is `--out`
naming the `--resume-from` file: that is the documented in-place resume (the earlier lines are
read into the run store before the file is replaced at the end).
"""

from __future__ import annotations

import os
from pathlib import Path

from costserve.errors import BadRequestError
from costserve.request import BatchRequest


def same_file(a: Path, b: Path) -> bool:
    """Whether `a` and `b` name one file: the same absolute path, or (both existing) the same inode (a link)."""
    a, b = Path(a).absolute(), Path(b).absolute()
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def check_outputs(request: BatchRequest) -> None:
    """Refuse (BadRequestError, one line) a results or error file that is the job file, the `--errors-out` being the
    `--resume-from` file, the two being one file, or either being a directory; create their missing parent
    directories (refused in one line when that fails)."""
    outputs = (("--out", request.results_path), ("--errors-out", request.errors_path))
    inputs = [("the job file", request.job_file)]
    for flag, path in outputs:
        if path.is_dir():
            raise BadRequestError(f"{flag} {path}: is a directory; name a file (or pass --output-dir DIR)")
        for what, source in inputs + ([("the --resume-from file", request.resume_from)] if flag != "--out" else []):
            if source is not None and same_file(path, source):
                raise BadRequestError(
                    f"{flag} {path}: is {what}; the run would replace it with its results: name another file"
                )
    if same_file(request.results_path, request.errors_path):
        raise BadRequestError(f"--out and --errors-out both name {request.results_path}: give them different files")
    for flag, path in outputs:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadRequestError(
                f"{flag} {path}: cannot create its directory ({exc.strerror or exc}); nothing was run"
            ) from None
        if not os.access(path.parent, os.W_OK):
            raise BadRequestError(f"{flag} {path}: its directory {path.parent} is not writable; nothing was run")
