"""Exceptions raised by osteolens. Every message names the file or key and the problem."""

from __future__ import annotations

from pathlib import Path


class OsteolensError(Exception):
    """Base class of every error osteolens raises on purpose."""


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
