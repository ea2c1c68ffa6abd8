"""RTSTRUCT contours to a voxel mask on a volume's grid.

Each CLOSED_PLANAR contour is mapped from patient millimetres to voxel indices with the
volume's geometry, assigned to the slice it lies on, and filled with the even-odd rule, so that
a second contour inside a first on the same slice is a hole (the convention of RT planning
systems). A voxel belongs to the mask when its centre lies inside.

Example:
    >>> vol = read_volume("STS_001/CT/image")                      # doctest: +SKIP
    >>> mask, name = rtstruct_to_mask("STS_001/CT/mask/RS.dcm", vol)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from osteolens.errors import ImageReadError
from osteolens.io.volumes import Volume


def roi_names(rtstruct_path: str | Path) -> list[str]:
    """The ROI names a RTSTRUCT holds."""
    ds = _read(rtstruct_path)
    return [str(r.ROIName) for r in ds.StructureSetROISequence]


def rtstruct_to_mask(rtstruct_path: str | Path, volume: Volume, roi: str | None = None) -> tuple[np.ndarray, str]:
    """Rasterise one ROI of a RTSTRUCT onto ``volume``'s grid.

    Args:
        rtstruct_path: the RTSTRUCT file.
        volume: the image whose grid the mask takes (read with :func:`osteolens.io.volumes.read_volume`).
        roi: ROI name; may be omitted when the structure set holds exactly one ROI.

    Returns:
        (boolean mask shaped like ``volume.array``, the ROI name used).

    Raises:
        ImageReadError: not a RTSTRUCT, unknown or ambiguous ROI, a frame of reference that is
            not the image's, or contours off the image's slices.
    """
    from matplotlib.path import Path as PolygonPath

    ds = _read(rtstruct_path)
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
    if roi is None:
        if len(names) != 1:
            raise ImageReadError(rtstruct_path, f"{len(names)} ROIs ({', '.join(names.values())}); name the one to use")
        number, roi = next(iter(names.items()))
    else:
        matches = [n for n, name in names.items() if name == roi]
        if not matches:
            raise ImageReadError(rtstruct_path, f"no ROI named {roi!r}; ROIs here: {', '.join(names.values())}")
        number = matches[0]
    frame = volume.meta.get("frame_of_reference_uid")
    roi_frames = {str(r.ReferencedFrameOfReferenceUID) for r in ds.StructureSetROISequence if int(r.ROINumber) == number}
    if frame and roi_frames and frame not in roi_frames:
        raise ImageReadError(rtstruct_path, f"ROI {roi!r} is in frame of reference {roi_frames.pop()}, the image in {frame}")
    contours = next((c for c in ds.ROIContourSequence if int(c.ReferencedROINumber) == number), None)
    mask = np.zeros(volume.array.shape, bool)
    if contours is None or "ContourSequence" not in contours:
        raise ImageReadError(rtstruct_path, f"ROI {roi!r} has no contours")
    inverse = np.linalg.inv(volume.affine)
    nz, ny, nx = volume.array.shape
    for contour in contours.ContourSequence:
        kind = str(contour.get("ContourGeometricType", "CLOSED_PLANAR"))
        points = np.asarray(contour.ContourData, float).reshape(-1, 3)
        if kind == "POINT" or len(points) < 3:
            continue
        ijk = (inverse @ np.c_[points, np.ones(len(points))].T).T[:, :3]  # (x, y, z) voxel indices
        k = float(np.median(ijk[:, 2]))
        slice_index = int(round(k))
        if abs(k - slice_index) > 0.25 or not 0 <= slice_index < nz:
            raise ImageReadError(rtstruct_path, f"a contour of {roi!r} lies at slice {k:.2f}, off the image's slices 0-{nz - 1}")
        x0, x1 = max(int(np.floor(ijk[:, 0].min())), 0), min(int(np.ceil(ijk[:, 0].max())), nx - 1)
        y0, y1 = max(int(np.floor(ijk[:, 1].min())), 0), min(int(np.ceil(ijk[:, 1].max())), ny - 1)
        if x1 < x0 or y1 < y0:
            continue
        yy, xx = np.mgrid[y0:y1 + 1, x0:x1 + 1]
        inside = PolygonPath(ijk[:, :2]).contains_points(np.c_[xx.ravel(), yy.ravel()]).reshape(xx.shape)
        mask[slice_index, y0:y1 + 1, x0:x1 + 1] ^= inside  # even-odd: an inner contour is a hole
    return mask, roi


def _read(path: str | Path):
    from osteolens.io.dicom import read_dicom_dataset

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "no such RTSTRUCT file")
    try:
        ds = read_dicom_dataset(path)  # a Part 10 file or a bare dataset
    except Exception as exc:
        raise ImageReadError(path, f"not a DICOM file: {exc}") from exc
    if str(ds.get("Modality", "")) != "RTSTRUCT" or "StructureSetROISequence" not in ds:
        raise ImageReadError(path, f"not a RTSTRUCT (Modality {ds.get('Modality', 'missing')})")
    return ds
