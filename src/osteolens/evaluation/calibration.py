"""Calibration of predicted probabilities: expected calibration error, Brier score, reliability.

Weights follow :mod:`osteolens.evaluation.classification`: ``None``, ``(n,)`` or ``(B, n)``.

Example:
    >>> import numpy as np
    >>> round(brier_score(np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]])), 6)
    0.05
"""

from __future__ import annotations

import numpy as np

from osteolens.evaluation.bootstrap import as_weight_matrix, finish


def _bins(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    # equal-width bins over [0, 1]; a confidence of exactly 1 falls in the last bin
    return np.minimum((confidence * n_bins).astype(int), n_bins - 1)


def expected_calibration_error(y_true, probs, weights=None, n_bins: int = 15):
    """Top-label ECE: sum over equal-width confidence bins of |accuracy - confidence| x bin share.

    Args:
        y_true: true class index per case.
        probs: ``(n, K)`` probabilities, or ``(n,)`` probabilities of the positive class for a
            binary problem (then the positive-class ECE of ``y_true`` in {0, 1}).
        weights: see module docstring.
        n_bins: number of bins (15, as in Guo et al. 2017).

    Returns:
        ECE in [0, 1].
    """
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(probs, dtype=float)
    if p.ndim == 1:
        confidence, correct = p, (y == 1).astype(float)
    else:
        confidence = p.max(axis=1)
        correct = (p.argmax(axis=1) == y).astype(float)
    w, one = as_weight_matrix(weights, len(y))
    b = _bins(confidence, n_bins)
    onehot = np.zeros((len(y), n_bins))
    onehot[np.arange(len(y)), b] = 1.0
    mass = w @ onehot
    acc = w @ (onehot * correct[:, None])
    conf = w @ (onehot * confidence[:, None])
    total = mass.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ece = np.abs(acc - conf).sum(axis=1) / total
    return finish(np.where(total > 0, ece, np.nan), one)


def brier_score(y_true, probs, weights=None):
    """Mean squared error between probabilities and the one-hot truth.

    For ``(n, K)`` probabilities this is the multi-class Brier score (sum over classes, range
    0-2); for ``(n,)`` it is the binary Brier score (range 0-1).
    """
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(probs, dtype=float)
    if p.ndim == 1:
        err = (p - (y == 1)) ** 2
    else:
        onehot = np.eye(p.shape[1])[y]
        err = ((p - onehot) ** 2).sum(axis=1)
    w, one = as_weight_matrix(weights, len(y))
    with np.errstate(divide="ignore", invalid="ignore"):
        return finish((w @ err) / w.sum(axis=1), one)


def reliability_curve(y_true, probs, n_bins: int = 15) -> dict[str, list]:
    """Per-bin mean confidence, accuracy and count of the top-label (or binary) prediction."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(probs, dtype=float)
    if p.ndim == 1:
        confidence, correct = p, (y == 1).astype(float)
    else:
        confidence, correct = p.max(axis=1), (p.argmax(axis=1) == y).astype(float)
    b = _bins(confidence, n_bins)
    out = {"bin_low": [], "bin_high": [], "confidence": [], "accuracy": [], "count": []}
    for k in range(n_bins):
        sel = b == k
        if not sel.any():
            continue
        out["bin_low"].append(k / n_bins)
        out["bin_high"].append((k + 1) / n_bins)
        out["confidence"].append(float(confidence[sel].mean()))
        out["accuracy"].append(float(correct[sel].mean()))
        out["count"].append(int(sel.sum()))
    return out
