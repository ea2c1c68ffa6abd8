"""Segmentation metrics per case (Dice, IoU, 95% Hausdorff, the largest lesion's long axis) and their aggregates.

Per-case values are computed once; bootstrap intervals then aggregate them with case weights
(:func:`weighted_mean`, :func:`pooled_dice`).

Example:
    >>> import numpy as np
    >>> a = np.zeros((8, 8), bool); a[2:6, 2:6] = True
    >>> b = np.zeros((8, 8), bool); b[3:7, 2:6] = True
    >>> dice(a, b), iou(a, b)
    (0.75, 0.6)
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from osteolens.evaluation.bootstrap import as_weight_matrix, finish


def dice(truth: np.ndarray, pred: np.ndarray) -> float:
    """Dice coefficient 2|A n B| / (|A| + |B|); 1.0 when both masks are empty."""
    t, p = np.asarray(truth, bool), np.asarray(pred, bool)
    denom = t.sum() + p.sum()
    return 1.0 if denom == 0 else float(2 * (t & p).sum() / denom)


def iou(truth: np.ndarray, pred: np.ndarray) -> float:
    """Intersection over union |A n B| / |A u B|; 1.0 when both masks are empty."""
    t, p = np.asarray(truth, bool), np.asarray(pred, bool)
    union = (t | p).sum()
    return 1.0 if union == 0 else float((t & p).sum() / union)


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, structure=np.ones((3,) * mask.ndim), border_value=0)


def hausdorff95(truth: np.ndarray, pred: np.ndarray, spacing: tuple[float, ...] | None = None) -> float:
    """95th-percentile symmetric Hausdorff distance between mask surfaces.

    The maximum of the two directed 95th percentiles (the convention of MONAI and the
    Medical Segmentation Decathlon). In pixels, or in the unit of ``spacing`` (e.g. mm).

    Returns:
        The distance, or NaN when either mask is empty.
    """
    t, p = np.asarray(truth, bool), np.asarray(pred, bool)
    if not t.any() or not p.any():
        return float("nan")
    # distances between the two surfaces do not change when the image is cropped to a box
    # holding both masks (plus a one-pixel border so that surfaces stay surfaces)
    box = tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2) for i in np.nonzero(t | p))
    t, p = t[box], p[box]
    st, sp = _surface(t), _surface(p)
    dt_to_t = ndimage.distance_transform_edt(~st, sampling=spacing)
    dt_to_p = ndimage.distance_transform_edt(~sp, sampling=spacing)
    return float(max(np.percentile(dt_to_t[sp], 95), np.percentile(dt_to_p[st], 95)))


def segmentation_case_metrics(truth: np.ndarray, pred: np.ndarray, spacing=None) -> dict[str, float]:
    """Dice, IoU, HD95 and the overlap counts of one case (counts feed the pooled Dice)."""
    t, p = np.asarray(truth, bool), np.asarray(pred, bool)
    return {
        "dice": dice(t, p),
        "iou": iou(t, p),
        "hd95": hausdorff95(t, p, spacing),
        "intersection": float((t & p).sum()),
        "truth_area": float(t.sum()),
        "pred_area": float(p.sum()),
    }


def long_axis_case_metrics(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The long axis (px) of the largest lesion in the truth and in the prediction; 0 where a mask is empty.

    The same measurement as an analysis reports (:func:`osteolens.inference.analyze.measure_lesions`), so a size read
    from the analysis can be checked against the truth.

    >>> t = np.zeros((20, 20), bool); t[5:10, 2:12] = True
    >>> {k: round(v, 2) for k, v in long_axis_case_metrics(t, np.zeros_like(t)).items()}
    {'truth_long_axis': 9.85, 'pred_long_axis': 0.0}
    """
    from osteolens.volumes.measure import largest_lesion_axes

    axes = [largest_lesion_axes(m) for m in (truth, pred)]
    return {"truth_long_axis": axes[0].long_axis if axes[0] else 0.0, "pred_long_axis": axes[1].long_axis if axes[1] else 0.0}


def weighted_mean(values, weights=None):
    """Mean of per-case values, skipping NaN (undefined) cases."""
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v)
    w, one = as_weight_matrix(weights, len(v))
    w = w * ok
    with np.errstate(divide="ignore", invalid="ignore"):
        return finish((w @ np.where(ok, v, 0.0)) / w.sum(axis=1), one)


def pooled_dice(intersection, truth_area, pred_area, weights=None):
    """Dice over all cases pooled: 2 sum|A n B| / (sum|A| + sum|B|)."""
    w, one = as_weight_matrix(weights, len(intersection))
    num = 2 * (w @ np.asarray(intersection, float))
    den = w @ (np.asarray(truth_area, float) + np.asarray(pred_area, float))
    with np.errstate(divide="ignore", invalid="ignore"):
        return finish(num / den, one)
