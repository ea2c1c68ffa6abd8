"""DeLong's test for two correlated ROC AUCs measured on the same cases.

DeLong, DeLong & Clarke-Pearson (1988), computed with the midrank algorithm of Sun & Xu
(2014). Returns the two AUCs, their difference with its 95% interval, z and the two-sided p.

Example:
    >>> import numpy as np
    >>> y = np.array([0, 0, 0, 1, 1, 1])
    >>> r = delong_test(y, np.array([.1, .3, .5, .4, .8, .9]), np.array([.2, .1, .3, .6, .7, .9]))
    >>> round(r["auc_a"], 3), round(r["auc_b"], 3)
    (0.889, 1.0)
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm, rankdata

from osteolens.errors import EvaluationError


def _structural_components(pos: np.ndarray, neg: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and the placement values V10 (per positive) and V01 (per negative)."""
    m, n = len(pos), len(neg)
    all_ranks = rankdata(np.r_[pos, neg])  # midranks
    pos_ranks = rankdata(pos)
    neg_ranks = rankdata(neg)
    v10 = (all_ranks[:m] - pos_ranks) / n  # share of negatives below each positive (ties 1/2)
    v01 = 1.0 - (all_ranks[m:] - neg_ranks) / m  # share of positives above each negative
    return float(v10.mean()), v10, v01


def delong_test(y_true, score_a, score_b, level: float = 0.95) -> dict:
    """Compare the AUCs of two scores on the same cases.

    Args:
        y_true: 0/1 truth.
        score_a: first model's score.
        score_b: second model's score.
        level: confidence level for the difference.

    Returns:
        dict with ``auc_a``, ``auc_b``, ``difference`` (a - b), ``ci_low``, ``ci_high``,
        ``var_a``, ``var_b``, ``covariance``, ``z`` and ``p_value``.

    Raises:
        EvaluationError: lengths differ or one class is absent.
    """
    y = np.asarray(y_true).astype(bool)
    a = np.asarray(score_a, dtype=float)
    b = np.asarray(score_b, dtype=float)
    if not (len(y) == len(a) == len(b)):
        raise EvaluationError(f"lengths differ: truth {len(y)}, a {len(a)}, b {len(b)}")
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        raise EvaluationError(f"DeLong needs at least 2 positives and 2 negatives, got {m} and {n}")
    auc_a, v10a, v01a = _structural_components(a[y], a[~y])
    auc_b, v10b, v01b = _structural_components(b[y], b[~y])
    s10 = np.cov(np.vstack([v10a, v10b]))
    s01 = np.cov(np.vstack([v01a, v01b]))
    cov = s10 / m + s01 / n
    var_diff = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = auc_a - auc_b
    if var_diff <= 0:
        z, p = 0.0, 1.0
        half = 0.0
    else:
        se = float(np.sqrt(var_diff))
        z = diff / se
        p = float(2 * norm.sf(abs(z)))
        half = norm.ppf(1 - (1 - level) / 2) * se
    return {
        "auc_a": auc_a, "auc_b": auc_b, "difference": diff,
        "ci_low": diff - half, "ci_high": diff + half,
        "var_a": float(cov[0, 0]), "var_b": float(cov[1, 1]), "covariance": float(cov[0, 1]),
        "z": float(z), "p_value": float(p), "n_positive": m, "n_negative": n,
    }
