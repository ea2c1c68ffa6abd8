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
