import numpy as np
import pytest

from tests.conftest import shared
from osteolens.io.volumes import read_volume
from osteolens.radiomics.spatial import moran_geary


def brute_force(image, mask, spacing):
    idx = np.argwhere(mask)
    x = image[mask].astype(float)
    pos = idx * np.asarray(spacing, float)
    dist = np.sqrt(((pos[:, None] - pos[None]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    w = 1.0 / dist
    d = x - x.mean()
    n, total = len(x), w.sum()
    moran = n / total * (w * np.outer(d, d)).sum() / (d**2).sum()
    geary = (n - 1) / (2 * total) * (w * (x[:, None] - x[None]) ** 2).sum() / (d**2).sum()
    return moran, geary


def test_fft_equals_the_pairwise_sum_on_a_real_ct_patch():
    folder = shared("ibsi") / "ibsi_1_ct_radiomics_phantom" / "nifti"
    image = read_volume(folder / "image" / "phantom.nii.gz")
    mask = read_volume(folder / "mask" / "mask.nii.gz").array > 0
    z, y, x = (int(c.mean()) for c in np.nonzero(mask))
    box = (slice(z - 2, z + 2), slice(y - 8, y + 8), slice(x - 8, x + 8))  # ~1,000 voxels of the real GTV
    sub_img, sub_mask = image.array[box], mask[box]
    assert 300 < sub_mask.sum() < 1500
    fast = moran_geary(sub_img, sub_mask, image.spacing)
    slow = brute_force(sub_img, sub_mask, image.spacing)
    assert fast == pytest.approx(slow, rel=1e-9)


def test_degenerate_rois():
    flat = np.full((2, 3, 3), 7.0)
    assert moran_geary(flat, flat > 0, (1, 1, 1)) == (1.0, 0.0)
    one = np.zeros((2, 3, 3), bool)
    one[1, 1, 1] = True
    assert all(np.isnan(moran_geary(flat, one, (1, 1, 1))))
