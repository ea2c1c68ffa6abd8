"""An image and its lesion mask on one grid, from whatever form they come in.

Images: a :class:`~osteolens.io.volumes.Volume`, a DICOM series folder, a NIfTI/NRRD/MHA file,
or a 2-D radiograph (PNG/JPEG/TIFF/DICOM; kept as a one-slice volume with its pixel spacing).
Masks: a boolean array, a volume file, a RTSTRUCT (with an ROI name when it holds several), or a
2-D mask image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from osteolens.errors import ImageReadError


def load_image_and_mask(image, mask, roi: str | None = None):
    """Load an image and its lesion mask onto one grid.

    Args:
        image: a :class:`Volume`, a DICOM series folder, a NIfTI/NRRD/MHA file, or a 2-D image
            file (PNG/JPEG/TIFF/DICOM radiograph; pixel spacing from DICOM when present).
        mask: a boolean array, a volume file, a RTSTRUCT file (with ``roi``), or a 2-D mask image.
        roi: the RTSTRUCT ROI name.

    Returns:
        (Volume, boolean mask array of the volume's shape).
    """
    from osteolens.io.volumes import Volume, is_volume_file, read_volume

    picture = False  # a 2-D image file: its grid has a pixel size but no place in space
    if isinstance(image, Volume):
        volume = image
    elif Path(image).is_dir() or is_volume_file(image):
        volume = read_volume(image)
    else:
        from osteolens.io.images import read_image, to_unit_grey

        arr, props = read_image(image)
        picture = True
        grey = to_unit_grey(arr, props) * 255.0
        sy, sx = props.spacing_mm or (1.0, 1.0)
        volume = Volume(array=grey[None].astype(np.float32), spacing=(1.0, float(sy), float(sx)), origin=(0.0, 0.0, 0.0),
                        modality="generic", units="grey (0-255)", source=str(image),
                        meta={"spacing_known": props.spacing_mm is not None})
    if isinstance(mask, np.ndarray):
        m = mask.astype(bool)
        if m.ndim == 2:
            m = m[None]
    elif is_volume_file(mask):
        grid = read_volume(mask)
        if not picture and grid.array.shape == volume.array.shape and not grid.same_grid(volume):
            # a mask of the image's shape that lies elsewhere in space belongs to another series
            raise ImageReadError(mask, f"the mask's grid differs from the image's ({grid.grid_text()}, against "
                                       f"{volume.grid_text()}): it was drawn on another series; resample it onto this "
                                       "image first")
        m = grid.array > 0
    else:
        path = Path(mask)
        from osteolens.io.dicom import dicom_header_value

        if path.is_file() and dicom_header_value(path, "Modality") == "RTSTRUCT":
            from osteolens.io.rtstruct import rtstruct_to_mask

            m, _ = rtstruct_to_mask(path, volume, roi)
        else:
            from osteolens.io.images import read_mask

            m = read_mask(path, expected_shape=volume.array.shape[1:])[None]
    if m.shape != volume.array.shape:
        raise ImageReadError(str(mask) if not isinstance(mask, np.ndarray) else "mask",
                             f"mask shape {m.shape} differs from the image's {volume.array.shape}")
    if not m.any():
        raise ImageReadError(str(mask) if not isinstance(mask, np.ndarray) else "mask",
                             "the mask is empty: no lesion voxel to compute features from")
    return volume, m
