"""Confidence intervals by bootstrap over patient groups.

Resampling groups with replacement is the same as giving each case a weight equal to the
number of times its group was drawn. Every osteolens metric accepts such weights, either one
vector (one resample) or a ``(B, n)`` matrix (``B`` resamples at once), so 2,000 resamples
cost a few matrix operations rather than 2,000 Python calls.

Example:
    >>> import numpy as np
    >>> from osteolens.evaluation.bootstrap import bootstrap_metric
    >>> from osteolens.evaluation.classification import roc_auc
    >>> y = np.array([0, 0, 1, 1, 0, 1]); s = np.array([.1, .4, .35, .8, .2, .9])
    >>> r = bootstrap_metric(roc_auc, (y, s), groups=np.arange(6), n_boot=200, seed=0)
    >>> round(r.value, 3)
    0.889
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class MetricResult:
    """A metric's value with its bootstrap confidence interval."""

    value: float
    ci_low: float
    ci_high: float
    n: int

    def to_dict(self) -> dict:
        def clean(x):
            return None if x is None or not np.isfinite(x) else round(float(x), 6)

        return {"value": clean(self.value), "ci_low": clean(self.ci_low), "ci_high": clean(self.ci_high), "n": int(self.n)}

    def __str__(self) -> str:
        if not np.isfinite(self.value):
            return "n/a"
        return f"{self.value:.3f} ({self.ci_low:.3f}-{self.ci_high:.3f})"


def group_bootstrap_weights(groups: Sequence, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """Case weights for ``n_boot`` resamples of the groups, drawn with replacement.

    Args:
        groups: group (patient) id of each case.
        n_boot: number of resamples.
        seed: random seed.

    Returns:
        A ``(n_boot, n_cases)`` float32 matrix (counts are exact in float32 and it halves
        the memory traffic); row ``b`` gives how many times each case's group was drawn.
    """
    _, g_index = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(g_index.max()) + 1 if len(g_index) else 0
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    flat = (draws + np.arange(n_boot)[:, None] * n_groups).ravel()
    counts = np.bincount(flat, minlength=n_boot * n_groups).reshape(n_boot, n_groups)
    return counts[:, g_index].astype(np.float32)


def percentile_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap values, ignoring resamples where the metric is undefined."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    return float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))


def bootstrap_metric(
    metric: Callable[..., np.ndarray | float],
    args: tuple,
    groups: Sequence | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    weights: np.ndarray | None = None,
    subset: np.ndarray | None = None,
) -> MetricResult:
    """A metric's value and its group-bootstrap confidence interval.

    Args:
        metric: a function ``metric(*args, weights=W)`` that accepts ``W`` of shape ``(n,)`` or
            ``(B, n)`` and returns a float or ``B`` values.
        args: the metric's positional arguments (arrays over the ``n`` cases).
        groups: group id per case (needed unless ``weights`` is given).
        n_boot: resamples.
        seed: random seed.
        level: confidence level.
        weights: a precomputed ``(B, n)`` matrix from :func:`group_bootstrap_weights`; share
            one across metrics so that all intervals come from the same resamples.
        subset: boolean mask of the cases to evaluate (a stratum); resampling stays over all
            groups, so the stratum's size varies between resamples as it would in new data.

    Returns:
        A :class:`MetricResult`.
    """
    if subset is not None:
        subset = np.asarray(subset, dtype=bool)
        args = tuple(np.asarray(a)[subset] for a in args)
    n = len(args[0])
    value = float(metric(*args, weights=None))
    if weights is None:
        if groups is None:
            raise ValueError("bootstrap_metric needs groups or weights")
        weights = group_bootstrap_weights(groups, n_boot, seed)
    if subset is not None:
        weights = weights[:, subset]
    with np.errstate(divide="ignore", invalid="ignore"):
        boots = np.asarray(metric(*args, weights=weights), dtype=float)
    low, high = percentile_ci(boots, level)
    return MetricResult(value, low, high, n)


def as_weight_matrix(weights: np.ndarray | None, n: int) -> tuple[np.ndarray, bool]:
    """Return ``(W, was_1d)`` with ``W`` of shape ``(B, n)``; ``None`` means all ones."""
    if weights is None:
        return np.ones((1, n)), True
    w = np.asarray(weights)
    if w.dtype.kind != "f":
        w = w.astype(np.float64)
    if w.ndim == 1:
        return w[None, :], True
    return w, False


def finish(values: np.ndarray, was_1d: bool):
    """Undo :func:`as_weight_matrix`'s batching: a float for one weight vector."""
    values = np.asarray(values, dtype=float)
    return float(values[0]) if was_1d else values
