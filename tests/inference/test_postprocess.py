import numpy as np

from osteolens.inference.postprocess import MaskPostprocess, lesion_components


def test_fragments_are_joined_specks_dropped_and_boxes_ranked():
    prob = np.zeros((200, 200))
    prob[40:100, 40:70] = 0.9
    prob[40:100, 73:100] = 0.8  # the same lesion split by a 3-pixel gap
    prob[150:156, 150:156] = 0.55  # a faint speck of 36 px, under 0.1% of the image (40 px)
    prob[10:30, 150:170] = 0.6  # a separate faint lesion of 400 px
    raw_mask, raw_boxes, raw_scores = lesion_components(prob, 0.5, MaskPostprocess())
    assert len(raw_boxes) == 3  # the speck is under 0.1% of the image; the split lesion gives two boxes
    mask, boxes, scores = lesion_components(prob, 0.5, MaskPostprocess(closing=0.02))
    assert boxes[0] == (40, 40, 100, 100) and len(boxes) == 2  # joined; the faint lesion ranks second
    assert scores[0] > scores[1] and abs(scores[1] - 0.5 * 0.6) < 1e-6
    only_largest = lesion_components(prob, 0.5, MaskPostprocess(closing=0.02, min_fraction=1.0))
    assert only_largest[1] == [(40, 40, 100, 100)] and not only_largest[0][10:30, 150:170].any()


def test_holes_and_defaults_from_older_models():
    prob = np.zeros((100, 100))
    prob[20:80, 20:80] = 0.9
    prob[40:60, 40:60] = 0.1
    assert not lesion_components(prob, 1.0, MaskPostprocess())[0][50, 50]
    assert lesion_components(prob, 1.0, MaskPostprocess(fill_holes=True))[0][50, 50]
    assert MaskPostprocess.from_calibration({"mask_threshold": 0.3}) == MaskPostprocess(threshold=0.3)
    assert lesion_components(np.zeros((10, 10)), 0.9, MaskPostprocess())[1:] == ([], [])


def test_a_large_map_is_post_processed_smaller_and_scaled_back_to_its_pixels():
    from osteolens.inference.postprocess import POSTPROCESS_MAX_SIDE, to_input_size, working_shape

    assert working_shape((300, 200)) == (300, 200)
    assert working_shape((5000, 4096)) == (POSTPROCESS_MAX_SIDE, 524)
    prob = np.zeros((640, 524))
    prob[100:180, 200:260] = 0.9
    prob[400:405, 50:58] = 0.8
    mask, boxes, _ = lesion_components(prob, 1.0, MaskPostprocess(min_component=0))
    big, big_boxes = to_input_size(mask, boxes, (5000, 4096))
    assert big.shape == (5000, 4096)
    scale = 5000 * 4096 / (640 * 524)
    assert abs(big.sum() / (mask.sum() * scale) - 1) < 0.02  # the same area, in input pixels
    assert big_boxes[0] == (1563, 781, 2033, 1407)  # (200, 100, 260, 180) times 4096/524 and 5000/640, outwards
    for x0, y0, x1, y1 in big_boxes:  # each box holds its component's enlarged pixels, and nothing is left outside
        assert big[y0:y1, x0:x1].any() and not big[y0 - 1, x0:x1].any() and not big[y1, x0:x1].any()
    inside = np.zeros_like(big)
    for x0, y0, x1, y1 in big_boxes:
        inside[y0:y1, x0:x1] = True
    assert not (big & ~inside).any()
    same, same_boxes = to_input_size(mask, boxes, mask.shape)
    assert same is mask and same_boxes is boxes
