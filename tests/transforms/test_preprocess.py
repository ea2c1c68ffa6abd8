import numpy as np
import pytest
from PIL import Image

from osteolens.transforms.preprocess import network_box, uniform_border_box

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
