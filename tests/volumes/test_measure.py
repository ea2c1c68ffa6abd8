import numpy as np
import pytest

from osteolens.volumes.measure import (axial_diameters_mm, lesion_measurements, max_diameter_mm, planar_axes, suv_metrics,
                                       volume_ml)


def test_box_volume_and_diameters():
    m = np.zeros((10, 40, 40), bool)
    m[2:6, 5:25, 10:20] = True  # 4 slices x 20 rows x 10 columns
    spacing = (3.0, 0.5, 1.0)
    assert volume_ml(m, spacing) == pytest.approx(4 * 20 * 10 * 1.5 / 1000)
    # corner voxel centres: dz 3*3, dy 19*0.5, dx 9*1
    assert max_diameter_mm(m, spacing) == pytest.approx(np.sqrt(9**2 + 9.5**2 + 9**2))
    axial = axial_diameters_mm(m, spacing)
    assert axial["long_axis_mm"] == pytest.approx(np.hypot(9.5, 9.0))
    assert axial["slice"] == 2 and axial["short_axis_mm"] > 0


def test_sphere_diameter():
    zz, yy, xx = np.mgrid[-12:13, -12:13, -12:13]
    ball = zz**2 + yy**2 + xx**2 <= 10**2
    assert max_diameter_mm(ball, (1, 1, 1)) == pytest.approx(20.0, abs=0.01)
    assert volume_ml(ball, (1, 1, 1)) == pytest.approx(4 / 3 * np.pi * 1000 / 1000, rel=0.02)


def test_suv_metrics_on_a_uniform_and_a_hot_spot_lesion():
    suv = np.full((20, 30, 30), 1.0)
    lesion = np.zeros_like(suv, bool)
    lesion[4:16, 5:25, 5:25] = True
    suv[lesion] = 3.0
    r = suv_metrics(suv, lesion, (2.0, 2.0, 2.0))
    assert r["suv_max"] == 3.0 and r["suv_mean"] == 3.0 and r["suv_peak"] == pytest.approx(3.0)
    assert r["mtv_suv2.5_ml"] == pytest.approx(lesion.sum() * 8 / 1000) == r["mtv_41pct_ml"]
    suv[10, 15, 15] = 30.0  # one hot voxel: SUVmax follows it, SUVpeak (1 mL) averages it away
    r = suv_metrics(suv, lesion, (2.0, 2.0, 2.0))
    assert r["suv_max"] == 30.0 and 3.0 < r["suv_peak"] < 30.0 / 4
    assert lesion_measurements(suv, lesion, (2.0, 2.0, 2.0), "PT")["suv_max"] == 30.0
    assert "suv_max" not in lesion_measurements(suv, lesion, (2.0, 2.0, 2.0), "CT")


def test_planar_axes_of_a_lesion_at_45_degrees():
    """A band running diagonally (|y - x| <= 2): its width is measured across the band, not along the image's rows
    and columns."""
    yy, xx = np.mgrid[0:80, 0:80]
    band = (np.abs(yy - xx) <= 2) & (yy + xx >= 40) & (yy + xx <= 120)
    axes = planar_axes(band)
    assert axes.short_axis == pytest.approx(4 / np.sqrt(2), abs=0.01)  # the outermost diagonals, 4 / sqrt(2) apart
    assert axes.long_axis == pytest.approx(np.hypot(40, 40), abs=2.5)
