"""Turn pydantic's multi-line validation errors into the one line a user needs."""

from __future__ import annotations

from pydantic import ValidationError


def first_problem(error: ValidationError, prefix: str = "") -> str:
    problem = error.errors()[0]
    location = ".".join(str(part) for part in problem["loc"])
    key = f"{prefix}.{location}" if prefix and location else (prefix or location or "top level")
    message = problem["msg"].removeprefix("Value error, ")
    if problem["type"] == "extra_forbidden":
        message = "unknown key (remove it or check its spelling)"
    elif problem["type"] == "missing":
        message = "missing (add it)"
    value = problem.get("input")
    shown = "" if problem["type"] in ("missing", "extra_forbidden") or isinstance(value, dict) else f" (got {value!r})"
    return f"{key}: {message}{shown}"
