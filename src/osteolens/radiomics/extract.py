"""IBSI-compliant radiomics features of a lesion, for 2-D radiographs and 3-D CT/MR/PET.

The engine is mirp (IBSI-compliant by design, pinned), driven by :class:`RadiomicsSettings`.
osteolens adds what it lacks: loading (DICOM series, RTSTRUCT, NIfTI, 2-D radiographs with
their pixel spacing), exact Moran's I and Geary's C by FFT instead of mirp's random-subset
estimate (see :mod:`osteolens.radiomics.spatial`), IBSI names and codes on every value, loud
errors for bad input, and an explicit reason on every value that cannot be computed.

Output, one row per feature value: ``feature`` (IBSI anchor), ``ibsi_code``, ``family``,
``aggregation`` (IBSI wording, empty for non-texture features), ``value``, ``missing_reason``.

Example:
    >>> table = extract_features("img.png", "mask.png", preset("radiograph"))   # doctest: +SKIP
    >>> table.query("feature == 'feat_stat_mean'").value.item()                  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import sys
import warnings

import numpy as np
import pandas as pd

from osteolens.errors import OsteolensError
from osteolens.io.lesion import load_image_and_mask
from osteolens.radiomics.names import family, ibsi_name
from osteolens.radiomics.settings import RadiomicsSettings, preset
from osteolens.radiomics.spatial import moran_geary

log = logging.getLogger(__name__)

MIRP_VERSION = "2.7.0"
COLUMNS = ["feature", "ibsi_code", "family", "aggregation", "value", "missing_reason"]
_MIRP_READY = False


def _mirp():
    """Import mirp once, quiet its logging, and give it exact Moran's I / Geary's C."""
    global _MIRP_READY
    import mirp

    if not _MIRP_READY:
        root = logging.getLogger()
        if not root.handlers:  # mirp calls logging.basicConfig(level=INFO, stream=stdout); keep stdout clean
            handler = logging.StreamHandler(sys.stderr)
            handler.setLevel(logging.WARNING)
            root.addHandler(handler)
        from importlib.metadata import version

        if version("mirp") != MIRP_VERSION:
            warnings.warn(f"mirp {version('mirp')} is not the pinned {MIRP_VERSION}: Moran's I and Geary's C "
                          "stay mirp's estimates", stacklevel=2)
        else:
            from mirp._features.morph_3d_data import Data3DSpatial

            def exact_spatial(self, image=None, mask=None, allow_approximation=True):
                data = self.data_int
                idx = data[["z", "y", "x"]].to_numpy().astype(int)
                idx -= idx.min(axis=0)
                grid = np.zeros(tuple(idx.max(axis=0) + 1))
                roi = np.zeros(grid.shape, bool)
                grid[tuple(idx.T)] = data["g"].to_numpy(float)
                roi[tuple(idx.T)] = True
                self.moran_i, self.geary_c = moran_geary(grid, roi, tuple(self.spacing))

            Data3DSpatial.compute_spatial_information = exact_spatial
        _MIRP_READY = True
    return mirp


def extract_features(image, mask, settings: RadiomicsSettings | None = None, roi: str | None = None) -> pd.DataFrame:
    """Compute IBSI features of the lesion ``mask`` in ``image``.

    Args:
        image, mask, roi: as in :func:`load_image_and_mask`.
        settings: processing and feature settings (default: the ``radiograph`` preset for 2-D
            input, ``ct``/``mr``/``pet`` by modality for 3-D input).

    Returns:
        Long table with :data:`COLUMNS`; values that cannot be computed are NaN with a reason.

    Raises:
        ImageReadError: unreadable input, empty mask, mismatched shapes.
        OsteolensError: the engine failed (message names the image).
    """
    volume, m = load_image_and_mask(image, mask, roi)
    if settings is None:
        settings = preset(_default_preset(volume))
    mirp = _mirp()
    from mirp._data_import.numpy_file import ImageNumpyFile, MaskNumpyFile

    source = volume.source or "image"
    # arrays go to mirp in memory with their grid; no temporary files, no ITK file readers
    grid = dict(image_spacing=tuple(float(s) for s in volume.spacing), image_origin=(0.0, 0.0, 0.0),
                image_orientation=np.eye(3), sample_name="case", image_dimensions=volume.array.shape)
    modality = None if settings.modality == "generic" else settings.modality  # mirp's "no modality"
    image_obj = ImageNumpyFile(image_data=volume.array.astype(np.float32), image_modality=modality, **grid)
    mask_obj = MaskNumpyFile(image_data=m.astype(np.uint8), image_modality="generic_mask", **grid)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = mirp.extract_features(image=image_obj, mask=mask_obj, **settings.to_mirp())
        except Exception as exc:  # the engine's own error, re-raised with the file's name
            raise OsteolensError(f"{source}: radiomics engine failed: {exc}") from exc
    if not result or result[0] is None or len(result[0]) == 0:
        raise OsteolensError(f"{source}: radiomics engine returned no features")
    row = result[0].iloc[0]
    n_voxels = int(m.sum())
    records = []
    for column, value in row.items():
        name = ibsi_name(str(column))
        if name is None:
            continue
        try:
            value = float(value)
        except (TypeError, ValueError):
            value = math.nan
        reason = ""
        if not math.isfinite(value):
            value = math.nan
            reason = (f"not defined for this ROI ({n_voxels} voxel(s) in the mask"
                      + (", a single slice" if m.shape[0] == 1 and name.anchor.startswith("feat_morph") else "") + ")")
        records.append((name.anchor, name.code, family(name.anchor), name.aggregation, value, reason))
    table = pd.DataFrame.from_records(records, columns=COLUMNS)
    table.attrs["notes"] = sorted({str(w.message) for w in caught if "SwigPy" not in str(w.message) and "swigvarlink" not in str(w.message)})
    table.attrs["settings"] = settings.model_dump()
    return table


def _default_preset(volume) -> str:
    if volume.array.shape[0] == 1:
        return "radiograph"
    return {"CT": "ct", "MR": "mr", "PT": "pet"}.get(volume.modality, "mr")


def wide_column(feature: str, aggregation: str) -> str:
    """Column name of one feature value in a one-row-per-case table."""
    if not aggregation:
        return feature
    return feature + "__" + aggregation.lower().replace(", ", "_").replace(" ", "_")


def to_wide(table: pd.DataFrame) -> dict[str, float]:
    """One case's long table as ``{column: value}``."""
    return {wide_column(f, a): v for f, a, v in zip(table.feature, table.aggregation, table.value)}
