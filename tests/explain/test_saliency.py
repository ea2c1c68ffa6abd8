import numpy as np
import pytest
from PIL import Image

from osteolens.explain.saliency import energy_inside, pointing_game_hit, saliency_map


@pytest.fixture(scope="module")
def truth(btxrd_dir):
    return np.asarray(Image.open(btxrd_dir / "masks" / "IMG000001.png")) > 0


def test_saliency_map_is_rectified_scaled_and_resized():
    cam = np.array([[-2.0, 0.0], [1.0, 4.0]])
    s = saliency_map(cam, (8, 6))
    assert s.shape == (8, 6) and s.dtype == np.float32
    assert s.min() == 0 and s.max() == pytest.approx(1.0)
    assert s[-1, -1] == pytest.approx(1.0) and s[0, 0] == 0  # negative evidence shown as none
    assert np.all(saliency_map(np.full((2, 2), -1.0), (4, 4)) == 0)  # nothing positive: no heat


def test_pointing_game_and_energy_on_a_real_lesion(truth):
    ys, xs = np.nonzero(truth)
    inside = np.zeros(truth.shape, np.float32)
    inside[ys[len(ys) // 2], xs[len(xs) // 2]] = 1.0
    assert pointing_game_hit(inside, truth) and energy_inside(inside, truth) == 1.0
    outside = np.zeros(truth.shape, np.float32)
    oy, ox = np.argwhere(~truth)[0]
    outside[oy, ox] = 1.0
    assert not pointing_game_hit(outside, truth) and energy_inside(outside, truth) == 0.0
    # a flat map: the energy inside is the lesion's share of the image
    assert energy_inside(np.ones(truth.shape), truth) == pytest.approx(truth.mean())
    assert np.isnan(energy_inside(np.zeros(truth.shape), truth))
