import numpy as np
import pytest
from PIL import Image

from osteolens.evaluation.detection import boxes_from_mask
from osteolens.explain.overlay import add_captions, draw_layers, draw_overlay

RED, GREEN = (255, 40, 40), (0, 255, 0)


@pytest.fixture(scope="module")
def lesion(btxrd_dir):
    """A real radiograph (grey in [0, 1]) and its real tumour mask."""
    grey = np.asarray(Image.open(btxrd_dir / "images" / "IMG000001.png").convert("L"), np.float32) / 255
    mask = np.asarray(Image.open(btxrd_dir / "masks" / "IMG000001.png")) > 0
    assert mask.any()
    return grey, mask


def test_layers_land_where_they_should(lesion):
    grey, mask = lesion
    h, w = grey.shape
    saliency = np.zeros_like(grey)
    saliency[: h // 2, : w // 2] = 1.0  # heat on the top-left quarter only
    boxes = boxes_from_mask(mask)
    picture = draw_layers(grey, mask, boxes, saliency).astype(int)
    assert picture.shape == (h, w, 3)
    grey8 = (grey * 255).astype(np.uint8).astype(int)
    drawn = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in boxes:
        drawn[y0:y1, x0:x1] = True  # the outline and the boxes lie inside the boxes
    # no heat and nothing drawn: the radiograph itself, grey
    plain = ~drawn
    plain[: h // 2, : w // 2] = False
    assert np.array_equal(picture[plain], np.repeat(grey8[plain][:, None], 3, axis=1))
    # full heat: 35% of jet's colour for 1.0 (dark red, (128, 0, 0)), rounded
    quarter = ~drawn[: h // 2, : w // 2]
    expected = np.round(0.65 * grey8[: h // 2, : w // 2][quarter][:, None] + 0.35 * np.array([128, 0, 0]))
    assert np.abs(picture[: h // 2, : w // 2][quarter] - expected).max() <= 1
    # the outline is green on the lesion's border (and nowhere outside the boxes), the boxes red
    inner = np.pad(mask, 1)
    border = mask & ~(inner[2:, 1:-1] & inner[:-2, 1:-1] & inner[1:-1, 2:] & inner[1:-1, :-2])
    green = (picture == GREEN).all(axis=2)
    assert green[border].mean() > 0.9 and not green[~drawn].any()
    for x0, y0, x1, y1 in boxes:
        assert tuple(picture[y0, x0]) == RED and tuple(picture[y1 - 1, x1 - 1]) == RED


def test_the_measured_long_axis_is_drawn_end_to_end(lesion):
    from osteolens.volumes.measure import largest_lesion_axes

    grey, mask = lesion
    r0, c0, r1, c1 = largest_lesion_axes(mask).ends
    picture = draw_layers(grey, None, [], None, axis_line=[c0, r0, c1, r1])
    cyan = (picture == (0, 220, 255)).all(axis=2)
    steps = np.linspace(0, 1, 50)
    near = np.pad(cyan, 1)
    near = np.max([near[1 + dy:near.shape[0] - 1 + dy, 1 + dx:near.shape[1] - 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
    assert cyan[r0, c0] and cyan[r1, c1]
    assert near[np.round(r0 + steps * (r1 - r0)).astype(int), np.round(c0 + steps * (c1 - c0)).astype(int)].all()  # within a pixel
    assert cyan.sum() <= 2 * max(abs(r1 - r0), abs(c1 - c0)) + 2  # a line, one pixel wide at 256 px, nothing else


def test_captions_frame_the_picture_legibly_at_any_size(lesion):
    grey, _ = lesion
    for width in (256, 1500):
        picture = draw_layers(np.asarray(Image.fromarray(grey).resize((width, width))), None, [], None)
        out = add_captions(picture, "indeterminate: refer to a specialist  p(N/B/M) 0.10/0.80/0.10")
        text_rows = out.shape[0] - width
        top = next(k for k in range(text_rows + 1) if np.array_equal(out[k:k + width], picture))
        caption, notice = out[:top], out[top + width:]
        assert (caption == 255).all(axis=2).any() and (notice == (255, 200, 0)).all(axis=2).any()
        # legible: the notice is wrapped, not shrunk (at 256 px a single line would be ~5 px tall)
        ink_rows = int(notice.any(axis=(1, 2)).sum())
        assert ink_rows >= 14


def test_overlay_is_the_layers_between_captions(lesion):
    grey, mask = lesion
    layers = draw_layers(grey, mask, boxes_from_mask(mask), None)
    assert np.array_equal(draw_overlay(grey, mask, boxes_from_mask(mask), None, "benign"),
                          add_captions(layers, "benign"))
