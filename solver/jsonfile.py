"""Read a JSON file into a pydantic model, with one-line errors that name the file and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def read_json_model(path: Path, schema: type[M], error: type[Exception]) -> M:
    """`schema` validated from the JSON in `path`; raises `error("FILE: field: problem")`."""
    try:
        return schema.model_validate(json.loads(path.read_text()))
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}: malformed JSON: {exc.msg} at line {exc.lineno}") from None
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        message = err["msg"].removeprefix("Value error, ")
        if not err["loc"] and ": " in message:  # a whole-model check names its field itself
            field, message = message.split(": ", 1)
        else:
            field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".") or "file"
        raise error(f"{path}: {field}: {message}") from None
