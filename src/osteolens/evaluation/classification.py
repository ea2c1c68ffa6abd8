"""Classification metrics as pure functions of (truth, prediction, weights).

Every function takes ``weights=None`` (all cases once), a ``(n,)`` vector or a ``(B, n)``
matrix of bootstrap weights (see :mod:`osteolens.evaluation.bootstrap`) and returns a float, or
``B`` values for a matrix. Undefined values (no positives, no predicted positives) are NaN.

Example:
    >>> import numpy as np
    >>> roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
"""

from __future__ import annotations

import warnings

import numpy as np

from osteolens.evaluation.bootstrap import as_weight_matrix, finish


def _safe_div(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def roc_auc(y_true, y_score, weights=None):
    """Area under the ROC curve (ties count one half), the weighted Mann-Whitney statistic.

    Args:
        y_true: 0/1 (or bool) truth per case.
        y_score: score per case, higher meaning more likely positive.
        weights: see module docstring.

    Returns:
        AUC, NaN when one class is absent.
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(y_score, dtype=float)
    w, one = as_weight_matrix(weights, len(y))
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    ws = w[:, order]
    ys = y[order]
    pos = np.add.reduceat(ws * ys, starts, axis=1)
    neg = np.add.reduceat(ws * ~ys, starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    num = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    den = pos.sum(axis=1) * neg.sum(axis=1)
    return finish(_safe_div(num, den), one)


def roc_curve_points(y_true, y_score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` of the ROC curve (thresholds decreasing; ``score >= t`` is positive)."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(y_score, dtype=float)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]
    tp = np.cumsum(y)[last]
    fp = np.cumsum(~y)[last]
    tpr = np.r_[0.0, tp / max(y.sum(), 1)]
    fpr = np.r_[0.0, fp / max((~y).sum(), 1)]
    return fpr, tpr, np.r_[np.inf, s[last]]


def threshold_for_sensitivity(y_true, y_score, target: float) -> float:
    """The highest threshold whose sensitivity (``score >= t``) is at least ``target``.

    NaN when there is no positive case: no threshold has a sensitivity then.
    """
    if not np.asarray(y_true).astype(bool).any():
        return float("nan")
    fpr, tpr, thr = roc_curve_points(y_true, y_score)
    ok = np.flatnonzero(tpr >= target)
    if ok.size == 0:
        return float(np.min(y_score))
    return float(thr[ok[0]])


def binary_counts(y_true, y_pred, weights=None):
    """Weighted ``(tp, fp, tn, fn)``, each a float or ``B`` values."""
    y = np.asarray(y_true).astype(bool)
    p = np.asarray(y_pred).astype(bool)
    w, one = as_weight_matrix(weights, len(y))
    out = [w @ (y & p), w @ (~y & p), w @ (~y & ~p), w @ (y & ~p)]
    return tuple(finish(v, one) for v in out)


def _binary(fn):
    def metric(y_true, y_pred, weights=None):
        tp, fp, tn, fn_ = (np.asarray(v, dtype=float) for v in binary_counts(y_true, y_pred, weights))
        value = fn(tp, fp, tn, fn_)
        return float(value) if np.ndim(value) == 0 else value

    metric.__doc__ = fn.__doc__
    metric.__name__ = fn.__name__
    return metric


@_binary
def sensitivity(tp, fp, tn, fn):
    """True-positive rate (recall), TP / (TP + FN)."""
    return _safe_div(tp, tp + fn)


@_binary
def specificity(tp, fp, tn, fn):
    """True-negative rate, TN / (TN + FP)."""
    return _safe_div(tn, tn + fp)


@_binary
def ppv(tp, fp, tn, fn):
    """Positive predictive value (precision), TP / (TP + FP)."""
    return _safe_div(tp, tp + fp)


@_binary
def npv(tp, fp, tn, fn):
    """Negative predictive value, TN / (TN + FN)."""
    return _safe_div(tn, tn + fn)


@_binary
def f1(tp, fp, tn, fn):
    """F1 score, 2 TP / (2 TP + FP + FN)."""
    return _safe_div(2 * tp, 2 * tp + fp + fn)


@_binary
def binary_accuracy(tp, fp, tn, fn):
    """(TP + TN) / all."""
    return _safe_div(tp + tn, tp + tn + fp + fn)


@_binary
def binary_balanced_accuracy(tp, fp, tn, fn):
    """Mean of sensitivity and specificity."""
    return (_safe_div(tp, tp + fn) + _safe_div(tn, tn + fp)) / 2


BINARY_METRICS = {
    "sensitivity": sensitivity,
    "specificity": specificity,
    "ppv": ppv,
    "npv": npv,
    "f1": f1,
    "accuracy": binary_accuracy,
    "balanced_accuracy": binary_balanced_accuracy,
}


def confusion_matrix(y_true, y_pred, n_classes: int, weights=None) -> np.ndarray:
    """Weighted confusion matrix, rows = truth, columns = prediction (integer class indices)."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(y_pred, dtype=int)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    cm = np.zeros((n_classes, n_classes))
    np.add.at(cm, (y, p), w)
    return cm


def multiclass_accuracy(y_true, y_pred, weights=None):
    """Fraction of cases whose predicted class index equals the true one."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(y_pred, dtype=int)
    w, one = as_weight_matrix(weights, len(y))
    return finish(_safe_div(w @ (y == p), w.sum(axis=1)), one)


def _per_class_recall(y, p, w, n_classes):
    return np.stack([_safe_div(w @ ((y == k) & (p == k)), w @ (y == k)) for k in range(n_classes)], axis=1)


def multiclass_balanced_accuracy(y_true, y_pred, weights=None, n_classes: int | None = None):
    """Mean per-class recall over the classes present."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(y_pred, dtype=int)
    k = n_classes or int(max(y.max(), p.max()) + 1)
    w, one = as_weight_matrix(weights, len(y))
    with warnings.catch_warnings():  # classes absent from a resample are skipped
        warnings.simplefilter("ignore", RuntimeWarning)
        return finish(np.nanmean(_per_class_recall(y, p, w, k), axis=1), one)


def macro_f1(y_true, y_pred, weights=None, n_classes: int | None = None):
    """Unweighted mean of the one-vs-rest F1 scores over classes present in truth or prediction."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(y_pred, dtype=int)
    k = n_classes or int(max(y.max(), p.max()) + 1)
    w, one = as_weight_matrix(weights, len(y))
    scores = []
    for c in range(k):
        tp = w @ ((y == c) & (p == c))
        fp = w @ ((y != c) & (p == c))
        fn = w @ ((y == c) & (p != c))
        scores.append(_safe_div(2 * tp, 2 * tp + fp + fn))
    with warnings.catch_warnings():  # classes absent from a resample are skipped
        warnings.simplefilter("ignore", RuntimeWarning)
        return finish(np.nanmean(np.stack(scores, axis=1), axis=1), one)


def macro_auc(y_true, probs, weights=None):
    """Mean one-vs-rest AUC over the classes present (``probs`` is ``(n, K)``)."""
    y = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs, dtype=float)
    aucs = [np.atleast_1d(roc_auc(y == k, probs[:, k], weights)) for k in range(probs.shape[1]) if (y == k).any()]
    with warnings.catch_warnings():  # a resample may lack a class: its mean is NaN, by design
        warnings.simplefilter("ignore", RuntimeWarning)
        value = np.nanmean(np.stack(aucs, axis=1), axis=1)
    return float(value[0]) if weights is None or np.ndim(weights) == 1 else value
