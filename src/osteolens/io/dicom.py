"""Read a single-frame DICOM radiograph into the osteolens convention.

Applied in the order the standard gives (PS3.4 N.2): modality LUT / rescale slope and
intercept, then the VOI LUT or window (first of several), then MONOCHROME1 inversion so that
bright always means dense. Pixel spacing comes from Pixel Spacing (0028,0030) or, for
projection radiographs without it, Imager Pixel Spacing (0018,1164) divided by the Estimated
Radiographic Magnification Factor (0018,1114) when present. Presentation LUT Shape (2050,0020)
is not read: the DX IOD ties it to the Photometric Interpretation, which is followed instead, as
archives do where the two disagree. Pixel Padding Value (0028,0120), with Pixel Padding Range
Limit (0028,0121) when present, marks stored values that are not part of the image (borders
padding a non-rectangular field to the rectangle): they are left out of the range used when the
file has no VOI, and shown black, as PS3.3 C.7.5.1.1.2 intends. The array keeps the padded frame;
``content_box`` in the properties says where the image inside it is, and analysis reads only that
(masks and boxes stay in the file's own pixels). 'FOR PROCESSING' images (Presentation Intent Type) are
refused: the model saw only processed, displayable radiographs. Compressed transfer syntaxes
decode through pydicom's plugins (pylibjpeg, pyjpegls). A bare dataset (no preamble and no file meta header, as some
older exporters and archives store objects) is read too, as the little-endian encoding its elements are in; one with
compressed pixel data is refused, since nothing records how they were compressed.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from osteolens.errors import ImageReadError
from osteolens.io.dicom_clinical import header_clinical
from osteolens.io.images import MAX_PIXELS, READER, ImageProperties, check_pixel_count


def read_dicom_dataset(path: str | Path, stop_before_pixels: bool = False):
    """A DICOM file's pydicom dataset with every element parsed, so that a damaged one fails here, named.

    pydicom parses an element when it is first used, so a damaged value (an unknown VR, a broken
    length) would otherwise raise from wherever it is read, with whatever type its parser uses.

    Raises:
        pydicom.errors.InvalidDicomError: not a DICOM file at all (callers decide whether to skip it).
        ImageReadError: a DICOM file that is damaged or cut short.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
            except InvalidDicomError as not_part10:
                ds = _bare_dataset(path, stop_before_pixels, not_part10)
            for _ in (*ds.file_meta.iterall(), *ds.iterall()):
                pass
        except (InvalidDicomError, ImageReadError):
            raise
        except (OSError, ValueError, EOFError) as exc:
            raise ImageReadError(path, f"unreadable DICOM: {exc}") from exc
        except Exception as exc:  # a damaged header raises whatever its element's parser does (BytesLengthException, ...)
            raise ImageReadError(path, f"unreadable DICOM: {type(exc).__name__}: {exc}") from exc
    cut_short = [str(w.message) for w in caught if "end of file" in str(w.message).lower()]
    if cut_short:
        raise ImageReadError(path, f"truncated DICOM (the file ends inside an element): {cut_short[0]}")
    return ds


def _bare_dataset(path: Path, stop_before_pixels: bool, not_part10: Exception):
    """A bare dataset (no preamble, no file meta header), as some older exporters and archives store objects, read
    with its missing file meta filled in: the transfer syntax is the one its elements are encoded in (implicit or
    explicit VR little endian), which holds for uncompressed pixel data only.

    Raises:
        pydicom.errors.InvalidDicomError: ``not_part10`` (pydicom's reason for refusing it as a Part 10 file) where the
            file does not start like a bare dataset; or it does, but has no valid SOP Class UID (not a DICOM object).
        ImageReadError: its pixel data are compressed, so the transfer syntax that would decode them is unknown.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    from osteolens.io.images import is_bare_dicom_head

    with open(path, "rb") as fh:
        head = fh.read(8)
    if not is_bare_dicom_head(head):
        raise not_part10
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
    except Exception as exc:  # a file that only starts like a dataset
        raise InvalidDicomError(f"starts like a bare DICOM dataset but does not read as one ({exc})") from exc
    try:
        valid = "SOPClassUID" in ds and ds.SOPClassUID.is_valid
    except Exception:  # a value that does not even parse
        valid = False
    if not valid:
        raise InvalidDicomError("starts like a bare DICOM dataset (no file meta header) but has no valid SOP Class UID")
    if "PixelData" in ds and ds["PixelData"].is_undefined_length:
        raise ImageReadError(path, "a bare DICOM dataset (no file meta header) with compressed pixel data: the "
                                   "transfer syntax that would decode them is not recorded; export the image as a "
                                   "DICOM Part 10 file")
    implicit = ds.original_encoding[0]  # little endian, as is_bare_dicom_head requires
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def dicom_header_value(path: str | Path, keyword: str):
    """One element of a DICOM file's dataset (a Part 10 file or a bare dataset), read without parsing the rest, or
    None where the file is not DICOM, does not read, or lacks the element: a quick look at what a file is, where
    :func:`read_dicom_dataset` would parse (and check) every element."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    from osteolens.io.images import is_bare_dicom_head

    read = dict(stop_before_pixels=True, specific_tags=[keyword])
    try:
        try:
            return pydicom.dcmread(path, **read).get(keyword)
        except InvalidDicomError:
            with open(path, "rb") as fh:
                if not is_bare_dicom_head(fh.read(8)):
                    return None
            return pydicom.dcmread(path, force=True, **read).get(keyword)
    except Exception:  # not DICOM or damaged: whoever reads the file in full names the problem
        return None


def read_dicom_image(path: str | Path, max_pixels: int = MAX_PIXELS,
                     reader: str = READER) -> tuple[np.ndarray, ImageProperties]:
    """Read a single-frame grey or colour DICOM image.

    Args:
        path: a DICOM Part 10 file (or a bare dataset).
        max_pixels, reader: Rows x Columns over ``max_pixels`` is refused before the pixels are decoded
            (:func:`~osteolens.io.images.check_pixel_count`).

    Returns:
        ``(array, properties)``; grey arrays are float64 after rescale/VOI, colour arrays
        are ``(H, W, 3)`` RGB.

    Raises:
        ImageReadError: unreadable, no pixel data, multi-frame, unsupported photometry, or
            nothing but padding.
    """
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    path = Path(path)
    try:
        ds = read_dicom_dataset(path)
    except InvalidDicomError as exc:
        raise ImageReadError(path, f"unreadable DICOM: {exc}") from exc
    if "PixelData" not in ds:
        sop = getattr(ds, "SOPClassUID", None) or getattr(ds.file_meta, "MediaStorageSOPClassUID", None)
        kind = getattr(sop, "name", str(sop)) if sop else "unknown SOP class"
        raise ImageReadError(path, f"DICOM has no pixel data ({kind}): not an image object, or a file cut short")
    if str(getattr(ds, "PresentationIntentType", "")).upper() == "FOR PROCESSING":
        raise ImageReadError(
            path,
            "a 'FOR PROCESSING' radiograph (raw detector data before the modality's image processing) "
            "cannot be analysed; send the 'FOR PRESENTATION' image of the same exposure",
        )
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageReadError(
            path, f"multi-frame DICOM ({frames} frames) is not supported; give one 2-D radiograph per file"
        )
    check_pixel_count(path, int(getattr(ds, "Columns", 0) or 0), int(getattr(ds, "Rows", 0) or 0), max_pixels, reader)
    try:
        raw = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for truncated/unsupported data
        raise ImageReadError(path, f"cannot decode DICOM pixel data: {exc}") from exc

    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    notes: list[str] = []
    if getattr(ds, "preamble", b"") is None:
        notes.append(f"bare dataset (no file meta header): read as {ds.file_meta.TransferSyntaxUID.name}")
    content_box = None
    bits = int(getattr(ds, "BitsStored", 8 * raw.dtype.itemsize))
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        if raw.ndim != 2:
            raise ImageReadError(path, f"expected a 2-D grey image, pixel array has shape {raw.shape}")
        padding = _padding_mask(ds, raw, path)
        if problem := _not_numbers(ds, ("RescaleSlope", "RescaleIntercept")):
            raise ImageReadError(path, f"cannot apply the modality rescale: {problem}")
        try:
            arr = apply_modality_lut(raw, ds).astype(np.float64)
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise ImageReadError(path, f"invalid modality LUT: {exc}") from exc
        if "RescaleSlope" in ds or "ModalityLUTSequence" in ds:
            notes.append("modality LUT / rescale applied")
        voi, why_full_range = None, "no VOI in file"
        if "VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds):
            # a VOI LUT is indexed by (integer) modality values; windows take any value
            lut_input = arr.astype(np.int64) if "VOILUTSequence" in ds and np.all(np.mod(arr, 1) == 0) else arr
            problem = _not_numbers(ds, ("WindowCenter", "WindowWidth"))
            if problem is None:
                try:
                    windowed = np.asarray(apply_voi_lut(lut_input, ds), dtype=np.float64)
                    voi = windowed, _voi_output_range(ds, windowed)
                except (ValueError, TypeError, IndexError, KeyError) as exc:  # e.g. a Window Width of 0
                    problem = str(exc)
            if problem is not None:
                why_full_range = f"the file's VOI LUT / window is invalid and was ignored ({problem})"
        if voi is not None:
            arr, (low, high) = voi
            notes.append("VOI LUT / window applied")
        else:
            native = arr if padding is None else arr[~padding]
            low, high = float(native.min()), float(native.max())
            notes.append(f"{why_full_range}: full pixel range used" + (" (padding excluded)" if padding is not None else ""))
        if photometric == "MONOCHROME1":
            arr = (high + low) - arr
            notes.append("MONOCHROME1 inverted")
        if padding is not None:
            arr[padding] = low
            content_box = _content_box(~padding)
            notes.append(f"{int(padding.sum())} padding pixels (Pixel Padding Value) shown black; "
                         f"image inside x {content_box[0]}-{content_box[2]}, y {content_box[1]}-{content_box[3]}")
        photometric_out = "MONOCHROME2"
    elif photometric in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"):
        if raw.ndim != 3 or raw.shape[-1] != 3:
            raise ImageReadError(path, f"expected a colour image, pixel array has shape {raw.shape}")
        arr = raw  # pydicom (3.x) already returns YCbCr data as RGB
        if photometric != "RGB":
            notes.append(f"{photometric} decoded to RGB")
        low, high = 0.0, float(2**bits - 1)
        photometric_out = "RGB"
    else:
        raise ImageReadError(path, f"unsupported Photometric Interpretation {photometric!r}")

    ignored: list[str] = []
    spacing, source = _spacing(ds, ignored)
    notes += ignored
    props = ImageProperties(
        path=str(path),
        format="dicom",
        shape=tuple(arr.shape),
        dtype=arr.dtype.name,
        bits=bits,
        channels=1 if arr.ndim == 2 else 3,
        photometric=photometric_out,
        spacing_mm=spacing,
        spacing_source=source,
        value_range=(float(low), float(high)),
        notes=notes + [f"source photometric {photometric}"],
        content_box=content_box,
        modality=str(getattr(ds, "Modality", "") or "").strip().upper() or None,
        header_clinical=header_clinical(ds) or None,
        study_uid=str(getattr(ds, "StudyInstanceUID", "") or "").strip() or None,
    )
    return arr, props


def read_dicom_spacing(path: str | Path) -> tuple[float, float] | None:
    """Pixel spacing in mm of a DICOM file from its header alone (no pixel decoding), or None."""
    try:
        ds = read_dicom_dataset(path, stop_before_pixels=True)
    except Exception:  # unreadable headers are reported by read_dicom_image, not here
        return None
    return _spacing(ds)[0]


def _padding_mask(ds, raw: np.ndarray, path: Path) -> np.ndarray | None:
    """Where the stored values are Pixel Padding Value (or within the padding range), or None.

    None also when no pixel is padding. Raises when every pixel is: there is no image then.
    """
    if "PixelPaddingValue" not in ds:
        return None
    try:
        value = int(ds.PixelPaddingValue)
        limit = int(ds.PixelPaddingRangeLimit) if "PixelPaddingRangeLimit" in ds else value
    except (TypeError, ValueError) as exc:
        raise ImageReadError(path, f"unreadable Pixel Padding Value / Range Limit: {exc}") from exc
    low, high = min(value, limit), max(value, limit)
    padding = (raw >= low) & (raw <= high)
    if padding.all():
        span = str(value) if low == high else f"{low}..{high}"
        raise ImageReadError(path, f"every pixel is padding (Pixel Padding Value {span}): no image to analyse")
    return padding if padding.any() else None


def _content_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)``, end-exclusive, of the True pixels of a 2-D mask (at least one)."""
    rows, cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _voi_output_range(ds, arr: np.ndarray) -> tuple[float, float]:
    """The output range of the VOI LUT (its entries) or window (its images of -inf and +inf).

    pydicom scales a window's output to the (rescaled) stored range; asking it for the images
    of the extremes keeps this module consistent with whatever it does.
    """
    from pydicom.pixels import apply_voi_lut

    if "VOILUTSequence" in ds:
        lut = np.asarray(ds.VOILUTSequence[0].LUTData, dtype=np.float64)
        return float(lut.min()), float(lut.max())
    extremes = np.asarray(apply_voi_lut(np.array([-1e12, 1e12]), ds), dtype=np.float64)
    return float(extremes.min()), float(extremes.max())


def _not_numbers(ds, keywords: tuple[str, ...]) -> str | None:
    """What is wrong with the first of ``keywords`` present in ``ds`` whose value is not a number (a
    decimal string holding text, which pydicom keeps as text with a warning), or None."""
    for keyword in keywords:
        if keyword not in ds:
            continue
        value = ds.data_element(keyword).value
        if value is None or value == "":
            continue  # present but empty: as if absent
        for v in [value] if isinstance(value, (str, bytes, int, float)) else list(value):
            try:
                float(v)
            except (TypeError, ValueError):
                return f"{keyword} {str(value)!r} is not a number"
    return None


#: the largest pixel spacing taken as real, in mm: a radiograph of 256 px at 10 mm would be 2.5 m across
MAX_SPACING_MM = 10.0


def _spacing(ds, ignored: list[str] | None = None) -> tuple[tuple[float, float] | None, str | None]:
    """Pixel spacing (row, column) in mm and the attribute it came from; values that cannot be a radiograph's
    (not a number, not positive, over :data:`MAX_SPACING_MM`) are skipped and described in ``ignored``."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            value = getattr(ds, keyword, None)
            if value is None or len(value) != 2:
                continue
            row, col = float(value[0]), float(value[1])
        except (ValueError, TypeError):
            row = col = float("nan")
        if not (0 < row <= MAX_SPACING_MM and 0 < col <= MAX_SPACING_MM):
            if ignored is not None:
                ignored.append(f"{keyword} {row:g} x {col:g} mm ignored (not a number, not positive or over "
                               f"{MAX_SPACING_MM:g} mm)")
            continue
        if keyword == "ImagerPixelSpacing":
            factor = float(getattr(ds, "EstimatedRadiographicMagnificationFactor", 1.0) or 1.0)
            if factor > 0 and factor != 1.0:
                return (row / factor, col / factor), f"{keyword} / EstimatedRadiographicMagnificationFactor"
        return (row, col), keyword
    return None, None
