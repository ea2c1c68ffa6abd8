"""Lesion measurements, as pure functions of (array, mask, spacing).

- volume in mL (voxel count x voxel volume);
- longest diameters: the maximum 3-D diameter (between surface voxel centres), the longest
  axial (in-slice) diameter as RECIST measures it, and on the same slice the lesion's narrowest
  width (minimum Feret diameter, :func:`planar_axes`);
- in a plane (a slice, or a radiograph's mask): :func:`planar_axes` (those two diameters) and
  :func:`largest_lesion_axes` (of the :func:`largest_lesion`, as a radiograph report gives its
  size);
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

from typing import NamedTuple

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


class PlanarAxes(NamedTuple):
    """A 2-D lesion's long and short axis (in the unit of the spacing) and the long axis's end pixels."""

    long_axis: float
    short_axis: float
    ends: tuple[int, int, int, int]  # (row, column) of one end, then of the other


def planar_axes(mask: np.ndarray, spacing=(1.0, 1.0)) -> PlanarAxes:
    """Long and short axis of a 2-D lesion, in the unit of ``spacing`` (row, column).

    The long axis is the largest distance between two lesion pixel centres (the maximum Feret
    diameter); the short axis is the lesion's narrowest caliper width (the minimum Feret
    diameter), which for a compact lesion lies close to perpendicular to the long axis, where
    RECIST measures it. Both come exactly from the convex hull of the pixel centres, so a lesion
    ``n`` pixels long measures ``n - 1``; an empty or one-pixel mask measures 0 and a line of
    pixels has no width.

    >>> m = np.zeros((20, 20), bool); m[5:9, 2:14] = True  # 4 rows x 12 columns
    >>> a = planar_axes(m, (0.5, 1.0))
    >>> round(a.long_axis, 2), round(a.short_axis, 2), a.ends  # the diagonal, the width (3 rows of 0.5), its ends
    (11.1, 1.5, (5, 2, 8, 13))
    """
    idx = np.argwhere(np.asarray(mask, bool))
    if len(idx) < 2:
        ends = tuple(int(v) for v in idx[0]) * 2 if len(idx) else (0, 0, 0, 0)
        return PlanarAxes(0.0, 0.0, ends)
    pts = idx * np.asarray(spacing, float)
    try:
        keep = ConvexHull(pts).vertices  # in order round the hull; the extremes are among them
    except (QhullError, ValueError):  # fewer than 3 points, or all on one line: its two ends (argwhere's order runs along it)
        keep = [0, len(idx) - 1]
    hull, hull_idx = pts[keep], idx[keep]
    d = np.sqrt(((hull[:, None] - hull[None]) ** 2).sum(-1))
    i, j = sorted(np.unravel_index(np.argmax(d), d.shape), key=lambda k: tuple(hull_idx[k]))
    ends = tuple(int(v) for v in (*hull_idx[i], *hull_idx[j]))
    edges = np.roll(hull, -1, axis=0) - hull
    normals = np.stack([-edges[:, 1], edges[:, 0]], axis=1) / np.hypot(edges[:, 0], edges[:, 1])[:, None]
    heights = np.abs(((hull[None] - hull[:, None]) * normals[:, None]).sum(-1)).max(axis=1)  # farthest vertex from each edge
    return PlanarAxes(float(d[i, j]), float(heights.min()), ends)


def largest_lesion(mask: np.ndarray) -> np.ndarray | None:
    """The largest 8-connected component of a 2-D mask, or None when the mask is empty."""
    labels, n = ndimage.label(np.asarray(mask, bool), structure=np.ones((3, 3)))
    if n == 0:
        return None
    return labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))


def largest_lesion_axes(mask: np.ndarray, spacing=(1.0, 1.0)) -> PlanarAxes | None:
    """:func:`planar_axes` of the :func:`largest_lesion` of a 2-D mask; None when it is empty.

    >>> m = np.zeros((20, 20), bool); m[2:4, 2:4] = True; m[10:13, 5:15] = True
    >>> a = largest_lesion_axes(m)
    >>> round(a.long_axis, 2), round(a.short_axis, 2)
    (9.22, 2.0)
    """
    lesion = largest_lesion(mask)
    return None if lesion is None else planar_axes(lesion, spacing)


def axial_diameters_mm(mask: np.ndarray, spacing) -> dict:
    """RECIST-style longest in-slice diameter, its slice, and that slice's short axis (:func:`planar_axes`)."""
    best = {"long_axis_mm": 0.0, "short_axis_mm": 0.0, "slice": None}
    for z in np.flatnonzero(mask.any(axis=(1, 2))):
        axes = planar_axes(mask[z], spacing[1:])
        if axes.long_axis > best["long_axis_mm"]:
            best = {"long_axis_mm": axes.long_axis, "short_axis_mm": axes.short_axis, "slice": int(z)}
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
