"""Lesion detection metrics from boxes: average precision and FROC.

Boxes are ``(x0, y0, x1, y1)`` in pixels with ``x1 = x0 + width`` (exclusive ends). Truth
boxes come from masks: one box per connected component (:func:`boxes_from_mask`).

Matching is per image and greedy by score: each detection, highest score first, takes the
unmatched truth box with the highest IoU if that IoU reaches the threshold (as in PASCAL VOC
and COCO). AP is the area under the interpolated precision-recall curve (all points).

Example:
    >>> import numpy as np
    >>> m = np.zeros((10, 10), bool); m[2:5, 3:8] = True
    >>> boxes_from_mask(m)
    [(3, 2, 8, 5)]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from osteolens.evaluation.bootstrap import as_weight_matrix, finish

Box = tuple[float, float, float, float]
IOU_THRESHOLDS_COCO = tuple(np.round(np.arange(0.5, 0.96, 0.05), 2))
FROC_RATES = (0.5, 1.0, 2.0, 4.0)


def boxes_from_mask(mask: np.ndarray, min_pixels: int = 1) -> list[tuple[int, int, int, int]]:
    """One box per 8-connected component of a binary mask (components under ``min_pixels`` dropped)."""
    labels, n = ndimage.label(np.asarray(mask, bool), structure=np.ones((3, 3)))
    boxes = []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None or (labels[sl] == k).sum() < min_pixels:
            continue
        boxes.append((sl[1].start, sl[0].start, sl[1].stop, sl[0].stop))
    return boxes


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between boxes ``a`` (N, 4) and ``b`` (M, 4)."""
    a = np.asarray(a, float).reshape(-1, 4)
    b = np.asarray(b, float).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


@dataclass
class Matched:
    """Detections of a whole data set, matched to truth at one IoU threshold."""

    image: np.ndarray  # image index of each detection
    score: np.ndarray
    is_tp: np.ndarray
    n_truth: np.ndarray  # truth boxes per image
    n_images: int


def match_detections(truth: list[list[Box]], detections: list[list[tuple[Box, float]]], iou_threshold: float) -> Matched:
    """Greedy per-image matching of scored detections to truth boxes.

    Args:
        truth: per image, its truth boxes.
        detections: per image, ``(box, score)`` pairs.
        iou_threshold: IoU needed for a true positive.

    Returns:
        A :class:`Matched` record.
    """
    images, scores, tps = [], [], []
    for i, (gt, dets) in enumerate(zip(truth, detections)):
        if not dets:
            continue
        dets = sorted(dets, key=lambda d: -d[1])
        ious = box_iou(np.array([d[0] for d in dets]), np.array(gt)) if gt else np.zeros((len(dets), 0))
        taken = np.zeros(len(gt), bool)
        for k, (_, score) in enumerate(dets):
            hit = False
            if len(gt):
                cand = np.where(taken, -1.0, ious[k])
                j = int(np.argmax(cand))
                if cand[j] >= iou_threshold:
                    taken[j] = True
                    hit = True
            images.append(i)
            scores.append(score)
            tps.append(hit)
    return Matched(
        image=np.asarray(images, dtype=int), score=np.asarray(scores, dtype=float),
        is_tp=np.asarray(tps, dtype=bool), n_truth=np.array([len(g) for g in truth], dtype=float),
        n_images=len(truth),
    )


def _cumulative(m: Matched, weights):
    w, one = as_weight_matrix(weights, m.n_images)
    order = np.argsort(-m.score, kind="mergesort")
    wd = w[:, m.image[order]]
    tp = np.cumsum(wd * m.is_tp[order], axis=1)
    fp = np.cumsum(wd * ~m.is_tp[order], axis=1)
    n_truth = w @ m.n_truth
    return tp, fp, n_truth, w, one


def _no_detections(weights):
    """Zero for every resample (AP and sensitivity are 0 when nothing was detected)."""
    one = weights is None or np.ndim(weights) == 1
    return finish(np.zeros(1 if one else len(weights)), one)


def average_precision(m: Matched, weights=None):
    """All-point interpolated AP; ``weights`` are per image."""
    if m.score.size == 0:
        return _no_detections(weights)
    tp, fp, n_truth, _, one = _cumulative(m, weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = tp / n_truth[:, None]
        precision = tp / np.maximum(tp + fp, 1e-12)
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    d_recall = np.diff(np.concatenate([np.zeros((len(recall), 1)), recall], axis=1), axis=1)
    ap = (d_recall * envelope).sum(axis=1)
    return finish(np.where(n_truth > 0, ap, np.nan), one)


def froc_sensitivity(m: Matched, rate: float, weights=None):
    """Lesion sensitivity at ``rate`` false positives per image (best point at or under it)."""
    if m.score.size == 0:
        return _no_detections(weights)
    tp, fp, n_truth, w, one = _cumulative(m, weights)
    n_images = w.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = tp / n_truth[:, None]
        fp_rate = fp / n_images[:, None]
    best = np.where(fp_rate <= rate, recall, 0.0).max(axis=1)
    return finish(np.where(n_truth > 0, best, np.nan), one)
