"""Exceptions raised by osteolens. Every message names the file or key and the problem."""

from __future__ import annotations

from pathlib import Path


class OsteolensError(Exception):
    """Base class of every error osteolens raises on purpose."""


def validation_message(exc) -> str:
    """A pydantic ``ValidationError`` as ``field.path: problem; ...``, each invalid value named by its field.

    >>> from pydantic import BaseModel
    >>> class Spacing(BaseModel):
    ...     mm: float
    >>> try:
    ...     Spacing(mm="wide")
    ... except ValueError as exc:
    ...     print(validation_message(exc))
    mm: Input should be a valid number, unable to parse string as a number
    """
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


def validated(kind, raw, where: str, what: str = "config"):
    """``kind(**raw)`` for values read from a JSON file or plan, or an error naming ``where`` and every bad field.

    Raises:
        OsteolensError: ``WHERE: invalid WHAT: field: problem; ...``, or that a JSON object was needed.
    """
    from pydantic import ValidationError

    if not isinstance(raw, dict):
        raise OsteolensError(f"{where}: invalid {what}: a JSON object of fields is needed, got {type(raw).__name__}")
    try:
        return kind(**raw)
    except ValidationError as exc:
        raise OsteolensError(f"{where}: invalid {what}: {validation_message(exc)}") from exc


class ImageReadError(OsteolensError):
    """An image file is missing, unreadable, truncated or of an unsupported kind."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ManifestError(OsteolensError):
    """A manifest or label file is malformed (missing column, bad value)."""


class SplitError(OsteolensError):
    """A split cannot be made as asked (too few groups, unknown centre)."""


class EvaluationError(OsteolensError):
    """Predictions and truth do not fit together, or a metric is undefined."""
