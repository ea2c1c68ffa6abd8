import numpy as np
import pytest
from PIL import Image

from osteolens.transforms.preprocess import border_box, network_box, noisy_border_box, uniform_border_box

TOL = 1.5 / 255


@pytest.fixture(scope="module")
def radiograph(btxrd_dir):
    """A real BTXRD radiograph with no flat row or column at its edges."""
    grey = np.asarray(Image.open(btxrd_dir / "images" / "IMG000004.png").convert("L")).astype(np.float32) / 255
    assert uniform_border_box(grey, TOL) is None
    return grey


def test_the_box_inside_a_letterbox_is_the_radiograph(radiograph):
    framed = np.pad(radiograph, ((7, 0), (30, 3)))  # black, uneven, none at the bottom
    assert uniform_border_box(framed, TOL) == (30, 7, 30 + 256, 7 + 256)
    white = np.pad(radiograph, 9, constant_values=1.0)
    assert uniform_border_box(white, TOL) == (9, 9, 265, 265)


def test_a_border_that_varies_more_than_the_tolerance_is_image(radiograph):
    framed = np.pad(radiograph, 10)
    framed[:10, 100] = 2.5 / 255  # one pixel of the top border off by 2.5 grey levels
    assert uniform_border_box(framed, TOL) == (10, 0, 266, 266)
    assert uniform_border_box(framed, 3 / 255) == (10, 10, 266, 266)


def test_an_image_mostly_flat_is_not_cut(radiograph):
    small = radiograph[:100, :100]
    framed = np.pad(small, ((0, 0), (60, 60)))  # the image would keep 100 of 220 columns
    assert uniform_border_box(framed, TOL) is None
    assert uniform_border_box(framed, TOL, min_keep=0.4) == (60, 0, 160, 100)
    assert uniform_border_box(np.zeros((50, 50), np.float32), TOL) is None


def test_a_flat_border_inside_a_marked_frame_is_cut_too(radiograph):
    """Padding first, then the image's own flat border: a radiograph reads the same with or without a frame."""
    own = np.pad(radiograph, ((6, 0), (0, 4)))  # the radiograph's own black band, top and right
    framed = np.pad(own, 20, constant_values=0.5)  # grey padding around it, as the reader marks it
    marked = (20, 20, 20 + 260, 20 + 262)
    assert network_box(framed, marked, None) == marked
    assert network_box(framed, marked, TOL) == (20, 26, 276, 282)
    assert network_box(own, None, TOL) == (0, 6, 256, 262)
    assert network_box(radiograph, None, TOL) is None and network_box(radiograph, None, None) is None


def _framed(grey: np.ndarray, border: np.ndarray, pad: int = 32) -> np.ndarray:
    out = border.copy()
    out[pad:-pad, pad:-pad] = grey
    return np.round(np.clip(out, 0, 1) * 255) / 255  # as an 8-bit export stores it


def test_noisy_and_graded_borders_are_cut_where_flat_ones_would_not_be(radiograph):
    """A dark border of detector noise and a bright collimated edge with a scatter ramp: nothing in
    them is flat, so the flat rule keeps them; the noisy rule cuts them to the radiograph's edge
    (within one pixel, never into it)."""
    rng = np.random.default_rng(0)
    shape = (256 + 64, 256 + 64)
    dark = _framed(radiograph, 0.03 + rng.normal(0, 0.01, shape))
    bright = _framed(radiograph, np.linspace(0.85, 0.75, shape[1])[None, :] + rng.normal(0, 0.01, shape))
    for framed in (dark, bright):
        assert uniform_border_box(framed, TOL) is None
        x0, y0, x1, y1 = border_box(framed, TOL, noisy=True)
        assert 31 <= x0 <= 32 and 31 <= y0 <= 32 and 288 <= x1 <= 289 and 288 <= y1 <= 289, (x0, y0, x1, y1)


def test_burnt_in_text_does_not_stop_the_cut(radiograph):
    """White text in a black border (a side marker, an annotation line) stops the flat rule at the
    text; the noisy rule's smoothing removes strokes thinner than 5 px and cuts the whole border."""
    from PIL import ImageDraw

    canvas = Image.new("L", (320, 320), 0)
    draw = ImageDraw.Draw(canvas)
    draw.text((6, 6), "R", fill=255)
    draw.text((42, 298), "AP 2019-03-14  70 kV", fill=255)
    framed = _framed(radiograph, np.asarray(canvas, np.float64) / 255)
    assert uniform_border_box(framed, TOL) == (7, 8, 288, 308)  # stopped by the text
    assert border_box(framed, TOL, noisy=True) == (32, 32, 288, 288)


def test_a_radiographs_own_air_is_not_a_border(btxrd_dir, radiograph):
    """BTXRD's IMG000128 (a knee) has dark, slightly noisy air on both sides that fades into the skin:
    no straight edge ends it, so nothing is cut. The flat letterbox test keeps its answer too."""
    knee = np.asarray(Image.open(btxrd_dir / "images" / "IMG000128.png").convert("L")).astype(np.float32) / 255
    assert border_box(knee, TOL, noisy=True) == border_box(knee, TOL) == uniform_border_box(knee, TOL)
    assert border_box(radiograph, TOL, noisy=True) is None
    framed = np.pad(radiograph, ((7, 0), (30, 3)))
    assert border_box(framed, TOL, noisy=True) == uniform_border_box(framed, TOL) == (30, 7, 286, 263)


def test_a_large_radiograph_is_measured_on_a_smaller_copy_and_mapped_back(radiograph):
    """A 1,280-px image is worked on at 512 px; the box maps back rounded outwards (never into the image)."""
    import cv2

    big = cv2.resize(radiograph, (1280, 1280), interpolation=cv2.INTER_LINEAR)
    rng = np.random.default_rng(1)
    framed = _framed(big, 0.9 + rng.normal(0, 0.01, (1280 + 320, 1280 + 320)), pad=160)
    x0, y0, x1, y1 = noisy_border_box(framed)
    assert 156 <= x0 <= 160 and 156 <= y0 <= 160 and 1440 <= x1 <= 1444 and 1440 <= y1 <= 1444, (x0, y0, x1, y1)


def test_network_box_cuts_noisy_borders_only_when_asked(radiograph):
    rng = np.random.default_rng(2)
    framed = _framed(radiograph, 0.03 + rng.normal(0, 0.01, (320, 320)))
    assert network_box(framed, None, TOL) is None and network_box(framed, None, None, noisy=True) is None
    box = network_box(framed, None, TOL, noisy=True)
    assert box is not None and abs(box[0] - 32) <= 1 and abs(box[2] - 288) <= 1
