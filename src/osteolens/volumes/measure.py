"""Lesion measurements on a 3-D grid, as pure functions of (array, mask, spacing).

- volume in mL (voxel count x voxel volume);
- longest diameters: the maximum 3-D diameter (between surface voxel centres), the longest
  axial (in-slice) diameter as RECIST measures it, and the longest diameter perpendicular to it
  on the same slice;
- PET: SUVmax, SUVmean, SUVpeak (the highest mean SUV in a 1 mL sphere centred on a lesion
  voxel, as PERCIST defines it) and the metabolic tumour volume (MTV) at SUV >= 2.5 and at
  >= 41% of SUVmax, both inside the lesion contour.

Example:
    >>> import numpy as np
    >>> m = np.zeros((3, 10, 10), bool); m[1, 2:8, 3:5] = True
    >>> round(volume_ml(m, (2.0, 1.0, 1.0)), 3)
    0.024
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist


def volume_ml(mask: np.ndarray, spacing) -> float:
    return float(np.count_nonzero(mask) * np.prod(spacing) / 1000.0)


def _surface_points(mask: np.ndarray, spacing) -> np.ndarray:
    surface = mask & ~ndimage.binary_erosion(mask)
    return np.argwhere(surface) * np.asarray(spacing, float)


def max_diameter_mm(mask: np.ndarray, spacing) -> float:
    """Largest distance between two lesion voxel centres (on the convex hull, so it is exact)."""
    pts = _surface_points(mask, spacing)
    if len(pts) < 2:
        return 0.0
    try:
        pts = pts[ConvexHull(pts).vertices]
    except (QhullError, ValueError):  # flat or tiny lesions: all surface points
        pass
    return float(pdist(pts).max())


def axial_diameters_mm(mask: np.ndarray, spacing) -> dict:
    """RECIST-style longest in-slice diameter, its slice, and the longest perpendicular diameter."""
    best = {"long_axis_mm": 0.0, "short_axis_mm": 0.0, "slice": None}
    sy, sx = float(spacing[1]), float(spacing[2])
    for z in np.flatnonzero(mask.any(axis=(1, 2))):
        pts = np.argwhere(mask[z]) * [sy, sx]
        if len(pts) < 2:
            continue
        hull = pts
        if len(pts) > 3:
            try:
                hull = pts[ConvexHull(pts).vertices]
            except (QhullError, ValueError):
                pass
        d = np.sqrt(((hull[:, None] - hull[None]) ** 2).sum(-1))
        i, j = np.unravel_index(np.argmax(d), d.shape)
        if d[i, j] > best["long_axis_mm"]:
            axis = (hull[j] - hull[i]) / d[i, j]
            normal = np.array([-axis[1], axis[0]])
            # extent perpendicular to the long axis: project every lesion pixel on the normal
            proj = pts @ normal
            best = {"long_axis_mm": float(d[i, j]), "short_axis_mm": float(proj.max() - proj.min()), "slice": int(z)}
    return best


def _sphere_kernel(radius_mm: float, spacing) -> np.ndarray:
    half = [int(np.ceil(radius_mm / s)) for s in spacing]
    grids = np.meshgrid(*[np.arange(-h, h + 1) * s for h, s in zip(half, spacing)], indexing="ij")
    return (sum(g**2 for g in grids) <= radius_mm**2).astype(float)


def suv_metrics(suv: np.ndarray, mask: np.ndarray, spacing) -> dict:
    """SUVmax, SUVmean, SUVpeak (1 mL sphere) and MTV (SUV >= 2.5; >= 41% SUVmax) inside ``mask``."""
    values = suv[mask]
    if values.size == 0:
        raise ValueError("empty lesion mask")
    radius = (3.0 * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0)  # 6.2 mm: a 1 mL sphere
    kernel = _sphere_kernel(radius, spacing)
    local_mean = ndimage.convolve(suv.astype(float), kernel / kernel.sum(), mode="nearest")
    suv_max = float(values.max())
    voxel_ml = float(np.prod(spacing)) / 1000.0
    return {
        "suv_max": suv_max,
        "suv_mean": float(values.mean()),
        "suv_peak": float(local_mean[mask].max()),
        "mtv_suv2.5_ml": float(np.count_nonzero(values >= 2.5) * voxel_ml),
        "mtv_41pct_ml": float(np.count_nonzero(values >= 0.41 * suv_max) * voxel_ml),
        "tlg_suv2.5": float(values[values >= 2.5].sum() * voxel_ml),
    }


def lesion_measurements(array: np.ndarray, mask: np.ndarray, spacing, modality: str = "") -> dict:
    """Everything above for one lesion; SUV metrics when ``modality`` is PT."""
    out = {"volume_ml": volume_ml(mask, spacing), "max_3d_diameter_mm": max_diameter_mm(mask, spacing),
           **axial_diameters_mm(mask, spacing), "n_voxels": int(np.count_nonzero(mask)),
           "intensity_mean": float(array[mask].mean()), "intensity_max": float(array[mask].max())}
    if modality == "PT":
        out.update(suv_metrics(array, mask, spacing))
    return out
