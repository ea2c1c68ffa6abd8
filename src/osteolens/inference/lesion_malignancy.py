"""Malignant or benign, read again from a zoomed-in view of the lesion and combined with the whole image's reading.

The whole-image network sees a lesion's margins, matrix and periosteal reaction at 320 px for the
whole film. A lesion refiner with the malignancy head (:class:`~osteolens.models.refiner.LesionRefiner`,
``malignancy_head=True``) reads the view the second look frames around the first look's top
lesion (:mod:`osteolens.inference.second_look`) at its own input size and returns one logit,
malignant against benign. Both readings are combined for the split of the tumour probability
only, so that tumour against normal is the whole-image network's alone::

    main   = log(p_malignant / p_benign)                  (the calibrated whole-image probabilities)
    c      = main_weight * main + lesion_weight * lesion_logit + bias
    p_malignant' = p_tumour * sigmoid(c),  p_benign' = p_tumour * (1 - sigmoid(c)),  p_normal' = p_normal

The three numbers are a logistic regression fitted on the validation split's tumour images that
have a view (:func:`fit_combination`); an image without a view (no lesion found) keeps its
probabilities. They are stored as ``calibration.lesion_malignancy``, with the malignant and
uncertainty thresholds chosen again on the combined probabilities
(:func:`osteolens.models.lesion_calibration.calibrate_lesion_malignancy`).

Example:
    >>> settings = {"main_weight": 1.0, "lesion_weight": 0.0, "bias": 0.0}
    >>> combined_probabilities(np.array([0.2, 0.4, 0.4]), 3.0, settings).round(3).tolist()
    [0.2, 0.4, 0.4]
    >>> settings["lesion_weight"] = 1.0
    >>> combined_probabilities(np.array([0.2, 0.4, 0.4]), np.log(3.0), settings).round(3).tolist()
    [0.2, 0.2, 0.6]
"""

from __future__ import annotations

import numpy as np

EPS = 1e-7


def main_logit(probs: np.ndarray) -> np.ndarray:
    """``log(p_malignant / p_benign)`` of ``(..., 3)`` probabilities (normal, benign, malignant)."""
    probs = np.asarray(probs, float)
    return np.log(np.clip(probs[..., 2], EPS, None)) - np.log(np.clip(probs[..., 1], EPS, None))


def combined_probabilities(probs: np.ndarray, lesion_logit, settings: dict) -> np.ndarray:
    """The probabilities with the tumour share split by the combined reading (module docstring).

    ``probs`` is ``(3,)`` or ``(N, 3)``; ``lesion_logit`` a number or ``(N,)``, NaN or None where
    there was no view (those rows are returned unchanged).
    """
    probs = np.asarray(probs, float)
    if lesion_logit is None:
        return probs.copy()
    lesion = np.asarray(lesion_logit, float)
    has = np.isfinite(lesion)
    c = settings["main_weight"] * main_logit(probs) + settings["lesion_weight"] * np.where(has, lesion, 0.0) + settings["bias"]
    share = 1.0 / (1.0 + np.exp(-c))
    tumour = probs[..., 1] + probs[..., 2]
    out = probs.copy()
    out[..., 1] = np.where(has, tumour * (1 - share), probs[..., 1])
    out[..., 2] = np.where(has, tumour * share, probs[..., 2])
    return out


def fit_combination(probs: np.ndarray, lesion_logits: np.ndarray, labels: np.ndarray) -> dict:
    """Fit the combination on tumour images (``labels`` 1 benign, 2 malignant) with a view (finite logit).

    A logistic regression of malignant against benign on ``[main_logit, lesion_logit]`` with a weak
    L2 penalty (C = 100, so that a tiny set cannot send the weights to infinity).

    Raises:
        ValueError: fewer than 5 benign or 5 malignant images with a view.
    """
    from sklearn.linear_model import LogisticRegression

    probs, lesion_logits, labels = np.asarray(probs, float), np.asarray(lesion_logits, float), np.asarray(labels)
    use = (labels > 0) & np.isfinite(lesion_logits)
    n_mal, n_ben = int((labels[use] == 2).sum()), int((labels[use] == 1).sum())
    if min(n_mal, n_ben) < 5:
        raise ValueError(f"lesion malignancy: {n_ben} benign and {n_mal} malignant images with a lesion view; "
                         "at least 5 of each are needed to fit the combination")
    x = np.stack([main_logit(probs[use]), lesion_logits[use]], 1)
    fit = LogisticRegression(C=100.0).fit(x, labels[use] == 2)
    return {"main_weight": round(float(fit.coef_[0][0]), 6), "lesion_weight": round(float(fit.coef_[0][1]), 6),
            "bias": round(float(fit.intercept_[0]), 6), "n_benign": n_ben, "n_malignant": n_mal}


def drop_reading(calibration: dict) -> dict:
    """``calibration`` without ``lesion_malignancy``, the thresholds it replaced put back (a new dict).

    For a copy whose second look or refiner changes: the fitted reading no longer applies.

    >>> drop_reading({"malignant_threshold": 0.3, "lesion_malignancy": {"replaced": {"malignant_threshold": 0.2}}})
    {'malignant_threshold': 0.2}
    """
    out = {k: v for k, v in calibration.items() if k != "lesion_malignancy"}
    if "lesion_malignancy" in calibration:
        out.update(calibration["lesion_malignancy"]["replaced"])
    return out
