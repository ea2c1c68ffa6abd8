import numpy as np
import pytest
from scipy.spatial.distance import cdist

from osteolens.evaluation import detection as det
from osteolens.evaluation import segmentation as seg


def square(y0, x0, size, shape=(40, 40)):
    m = np.zeros(shape, bool)
    m[y0:y0 + size, x0:x0 + size] = True
    return m


def test_dice_iou_by_hand():
    a, b = square(5, 5, 10), square(5, 10, 10)  # overlap 10 x 5 = 50
    assert seg.dice(a, b) == pytest.approx(2 * 50 / 200)
    assert seg.iou(a, b) == pytest.approx(50 / 150)
    assert seg.dice(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0


def test_hd95_against_brute_force_and_spacing():
    a, b = square(5, 5, 10), square(8, 5, 10)
    def surface(m):
        return np.argwhere(seg._surface(m))
    d = cdist(surface(a), surface(b))
    brute = max(np.percentile(d.min(axis=1), 95), np.percentile(d.min(axis=0), 95))
    assert seg.hausdorff95(a, b) == pytest.approx(brute)
    assert seg.hausdorff95(a, b) == pytest.approx(3.0)
    assert seg.hausdorff95(a, b, spacing=(0.5, 1.0)) == pytest.approx(1.5)  # shift is along rows
    assert np.isnan(seg.hausdorff95(a, np.zeros_like(a)))


def test_pooled_dice_and_weighted_mean():
    assert seg.pooled_dice([50, 0], [100, 100], [100, 0]) == pytest.approx(100 / 300)
    assert seg.weighted_mean([1.0, np.nan, 0.0]) == 0.5
    W = np.array([[1, 1, 1], [2, 0, 0]], float)
    assert seg.weighted_mean([1.0, np.nan, 0.0], W).tolist() == [0.5, 1.0]


def test_boxes_from_mask_two_components():
    m = square(2, 3, 4) | square(20, 20, 5)
    assert det.boxes_from_mask(m) == [(3, 2, 7, 6), (20, 20, 25, 25)]


def test_average_precision_by_hand():
    truth = [[(0, 0, 10, 10)], [(0, 0, 10, 10)], []]
    dets = [
        [((0, 0, 10, 10), 0.9)],          # TP
        [((50, 50, 60, 60), 0.8), ((1, 1, 10, 10), 0.3)],  # FP then TP (IoU 0.81)
        [((0, 0, 5, 5), 0.5)],            # FP on an image without lesion
    ]
    m = det.match_detections(truth, dets, 0.5)
    # ranked: .9 TP (P=1, R=.5), .8 FP, .5 FP, .3 TP (P=.5, R=1) -> AP = .5*1 + .5*.5
    assert det.average_precision(m) == pytest.approx(0.75)
    # FROC over 3 images: at 0.5 FP/image (1.5 FPs) the best recall reached with <=1 FP is .5
    assert det.froc_sensitivity(m, 0.5) == pytest.approx(0.5)
    assert det.froc_sensitivity(m, 1.0) == pytest.approx(1.0)
    strict = det.match_detections(truth, dets, 0.85)
    assert det.average_precision(strict) == pytest.approx(0.5)
