"""3-D images (CT, MR, PET) from a DICOM series folder or a NIfTI/NRRD/MHA file, as one ``Volume``.

DICOM slices are ordered by their position along the slice normal (never by file name), the
spacing between slices comes from those positions, rescale slope/intercept are applied, and PET
is brought to body-weight SUV (from Bq/ml with the decay-corrected injected dose, or as stored
when the series is already in g/ml). Arrays are ``(z, y, x)``; geometry follows DICOM/ITK
(LPS millimetres): ``origin`` is the centre of voxel (0, 0, 0) and ``direction`` holds the unit
vectors of the x, y and z index axes as columns.

Example:
    >>> vol = read_volume("../shared/data/sts_ct_mr_pet/dicom/STS_001/CT/image")  # doctest: +SKIP
    >>> vol.array.shape, vol.spacing                                             # doctest: +SKIP
    ((59, 202, 198), (3.27, 0.976562, 0.976562))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from osteolens.errors import ImageReadError

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")


@dataclass
class Volume:
    """A 3-D image on a physical grid."""

    array: np.ndarray
    spacing: tuple[float, float, float]  # (z, y, x) mm
    origin: tuple[float, float, float]  # (x, y, z) LPS mm of voxel (0, 0, 0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    modality: str = ""
    units: str = ""
    source: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix from (x, y, z) voxel index to LPS millimetres."""
        a = np.eye(4)
        a[:3, :3] = self.direction @ np.diag(self.spacing[::-1])
        a[:3, 3] = self.origin
        return a

    def voxel_volume_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    def to_sitk(self, array: np.ndarray | None = None):
        """This grid as a SimpleITK image, with ``array`` (default: the volume's own) as pixels."""
        import SimpleITK as sitk

        img = sitk.GetImageFromArray(self.array if array is None else array)
        img.SetSpacing([float(s) for s in self.spacing[::-1]])
        img.SetOrigin([float(o) for o in self.origin])
        img.SetDirection([float(v) for v in np.asarray(self.direction).ravel()])
        return img

    @classmethod
    def from_sitk(cls, img, **kwargs) -> "Volume":
        import SimpleITK as sitk

        return cls(array=sitk.GetArrayFromImage(img), spacing=tuple(img.GetSpacing()[::-1]), origin=tuple(img.GetOrigin()),
                   direction=np.array(img.GetDirection(), float).reshape(3, 3), **kwargs)

    def grid_text(self) -> str:
        """The grid in words, for messages: shape, spacing, origin and direction."""
        return (f"shape (z, y, x) {self.array.shape}, spacing {tuple(round(float(v), 4) for v in self.spacing)} mm, "
                f"origin {tuple(round(float(v), 3) for v in self.origin)} mm, "
                f"direction {tuple(round(float(v), 3) for v in np.asarray(self.direction).ravel())}")

    def same_grid(self, other: "Volume", tol: float = 1e-3) -> bool:
        return (self.array.shape == other.array.shape and np.allclose(self.spacing, other.spacing, atol=tol)
                and np.allclose(self.origin, other.origin, atol=tol * 10) and np.allclose(self.direction, other.direction, atol=tol))


def is_volume_file(path: str | Path) -> bool:
    return str(path).lower().endswith(VOLUME_SUFFIXES)


def read_volume(path: str | Path, series_uid: str | None = None) -> Volume:
    """Read a DICOM series folder or a NIfTI/NRRD/MHA file.

    Args:
        path: a folder of DICOM files (one series, or pick one with ``series_uid``) or a volume file.
        series_uid: SeriesInstanceUID to read when the folder holds several series.

    Raises:
        ImageReadError: naming the path and the problem (missing, no DICOM, several series,
            missing or uneven slices, unreadable file).
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "no such file or folder")
    if path.is_dir():
        return _read_dicom_series(path, series_uid)
    if not is_volume_file(path):
        raise ImageReadError(path, f"not a volume file ({', '.join(VOLUME_SUFFIXES)}) nor a DICOM series folder")
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise ImageReadError(path, f"unreadable volume: {str(exc).strip().splitlines()[-1]}") from exc
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(path, f"expected a 3-D single-channel image, got {img.GetDimension()}-D with "
                                   f"{img.GetNumberOfComponentsPerPixel()} channel(s)")
    volume = Volume.from_sitk(img, source=str(path))
    if volume.array.dtype.kind == "f" and not np.isfinite(volume.array).all():
        bad = int((~np.isfinite(volume.array)).sum())
        raise ImageReadError(path, f"{bad} of {volume.array.size} voxels are not numbers (NaN or infinity); every "
                                   "measurement over them would be undefined: give them a value (such as the "
                                   "background's) first")
    return volume


def _read_dicom_series(folder: Path, series_uid: str | None) -> Volume:
    from pydicom.errors import InvalidDicomError

    from osteolens.io.dicom import read_dicom_dataset

    headers, no_position = [], []
    for f in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            ds = read_dicom_dataset(f, stop_before_pixels=True)  # a damaged slice is named, not passed over
        except InvalidDicomError:  # not DICOM: ignored, as viewers do
            continue
        if "ImagePositionPatient" in ds and "PixelSpacing" in ds:
            headers.append((f, ds))
        else:
            no_position.append(f.name)  # a structure set, a report, or a slice whose header is damaged
    if not headers:
        raise ImageReadError(folder, "no DICOM image slices (with ImagePositionPatient and PixelSpacing) in this folder")
    series = sorted({str(ds.SeriesInstanceUID) for _, ds in headers})
    if series_uid is not None:
        headers = [(f, ds) for f, ds in headers if str(ds.SeriesInstanceUID) == series_uid]
        if not headers:
            raise ImageReadError(folder, f"no slices of series {series_uid}; series here: {', '.join(series)}")
    elif len(series) > 1:
        raise ImageReadError(folder, f"{len(series)} series in one folder; pass series_uid, one of: {', '.join(series)}")
    first = headers[0][1]
    iop = np.array(first.ImageOrientationPatient, float)
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    positions = np.array([np.array(ds.ImagePositionPatient, float) @ normal for _, ds in headers])
    order = np.argsort(positions)
    headers = [headers[i] for i in order]
    positions = positions[order]
    if len(headers) > 1:
        gaps = np.diff(positions)
        if np.any(gaps < 1e-3):
            raise ImageReadError(folder, "two slices share one position (duplicate files or several acquisitions)")
        step = float(np.median(gaps))
        if np.max(np.abs(gaps - step)) > 0.1 * step:
            worst = int(np.argmax(np.abs(gaps - step)))
            unplaced = (f"; {len(no_position)} DICOM file(s) here have no slice position ({', '.join(no_position[:5])}"
                        f"{', ...' if len(no_position) > 5 else ''}): a damaged slice reads so") if no_position else ""
            raise ImageReadError(folder, f"uneven slice spacing ({gaps[worst]:.2f} mm between slices {worst} and {worst + 1}, "
                                         f"median {step:.2f} mm): a slice is missing{unplaced}")
    else:
        step = float(first.get("SliceThickness", 1.0) or 1.0)
    slices = []
    for f, _ in headers:
        ds = read_dicom_dataset(f)
        try:
            pixels = ds.pixel_array.astype(np.float64)
        except Exception as exc:
            raise ImageReadError(f, f"cannot decode pixel data: {exc}") from exc
        slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
        slices.append(pixels * slope + intercept)
    shapes = {s.shape for s in slices}
    if len(shapes) != 1:
        raise ImageReadError(folder, f"slices of different sizes: {sorted(shapes)}")
    array = np.stack(slices)
    modality = str(first.get("Modality", ""))
    units = str(first.get("Units", "")) if modality == "PT" else ("HU" if modality == "CT" else "")
    meta = {"series_uid": str(first.SeriesInstanceUID), "study_uid": str(first.get("StudyInstanceUID", "")),
            "frame_of_reference_uid": str(first.get("FrameOfReferenceUID", "")), "patient_id": str(first.get("PatientID", "")),
            "n_slices": len(headers)}
    if modality == "PT":
        array, units = _to_suv(array, first, folder)
    ps = [float(v) for v in first.PixelSpacing]  # (row spacing = y, column spacing = x)
    direction = np.stack([row, col, normal], axis=1)
    origin = tuple(float(v) for v in headers[0][1].ImagePositionPatient)
    return Volume(array=array.astype(np.float32), spacing=(step, ps[0], ps[1]), origin=origin, direction=direction,
                  modality=modality, units=units, source=str(folder), meta=meta)


def _to_suv(array: np.ndarray, ds, folder: Path) -> tuple[np.ndarray, str]:
    """Body-weight SUV: activity concentration x weight / decay-corrected injected dose."""
    units = str(ds.get("Units", "")).upper()
    if units in ("GML", "G/ML"):
        return array, "SUVbw"
    if units != "BQML":
        return array, units or "unknown"  # left as stored; the report says so
    try:
        weight_g = float(ds.PatientWeight) * 1000.0
        info = ds.RadiopharmaceuticalInformationSequence[0]
        dose = float(info.RadionuclideTotalDose)
        half_life = float(info.RadionuclideHalfLife)
        start = _dicom_time(info.RadiopharmaceuticalStartTime)
        scan = _dicom_time(ds.get("SeriesTime") or ds.AcquisitionTime)
    except (AttributeError, IndexError, KeyError, ValueError, TypeError) as exc:
        raise ImageReadError(folder, f"PET in Bq/ml without what SUV needs (weight, dose, half-life, times): {exc}") from exc
    decay = 2.0 ** (-((scan - start).total_seconds() % 86400) / half_life) if str(ds.get("DecayCorrection", "START")).upper() == "START" else 1.0
    return array * weight_g / (dose * decay), "SUVbw"


def _dicom_time(value) -> datetime:
    text = str(value).split(".")[0].ljust(6, "0")
    return datetime.strptime(text[:6], "%H%M%S")
