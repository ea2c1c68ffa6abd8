"""Read 2-D images (radiographs, masks, tiles) behind one interface.

``read_image(path)`` returns ``(array, ImageProperties)``. The format is told from the
file's first bytes, never from its extension, so a text file named ``.png`` is refused with a
message that says what it really is.

Intensity convention: ``read_image`` returns the stored values after the DICOM modality and
VOI transforms (for PNG/JPEG/TIFF, the stored values as they are). ``to_unit_grey`` maps any
such array to the one convention the models use: a 2-D ``float32`` array in ``[0, 1]`` where
brighter means denser (bone is bright).

Example:
    >>> from osteolens.io.images import read_image, to_unit_grey
    >>> arr, props = read_image("radiograph.dcm")            # doctest: +SKIP
    >>> grey = to_unit_grey(arr, props)                        # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from osteolens.errors import ImageReadError

#: The most pixels an image may have (rows x columns); a larger one is refused before it is decoded (a
#: decompression bomb: a small file that would fill the memory). Radiographs and whole tiles can exceed Pillow's
#: default of 89 megapixels. Pillow itself only warns between its limit and twice it, so :func:`check_pixel_count`
#: refuses; DICOM files are held to the same limit.
MAX_PIXELS = 400_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
#: whose limit :data:`MAX_PIXELS` is, as refusals name it (a caller with a lower limit names itself instead)
READER = "osteolens reads"


def check_pixel_count(path, width: int, height: int, max_pixels: int = MAX_PIXELS,
                      reader: str = READER) -> None:
    """Refuse an image of more than ``max_pixels`` (:data:`MAX_PIXELS`), naming the file, its size and the ``reader``
    whose limit it is.

    >>> check_pixel_count("big.png", 30_000, 20_000)
    Traceback (most recent call last):
    ...
    osteolens.errors.ImageReadError: big.png: image is 30000 x 20000 px (600 megapixels), over the 400 megapixels osteolens reads (a guard against files that decode to more than the memory holds)
    """
    if width * height > max_pixels:
        raise _over_limit(path, f"{width} x {height} px ({width * height / 1e6:.0f} megapixels)", max_pixels, reader)


def _over_limit(path, size: str, max_pixels: int, reader: str) -> ImageReadError:
    return ImageReadError(path, f"image is {size}, over the {max_pixels / 1e6:.0f} megapixels {reader} (a guard "
                                "against files that decode to more than the memory holds)")

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
    (b"BM", "bmp"),  # Windows bitmap, as some older consoles and screen exports write radiographs
)
#: the file-name endings taken as images where a folder is searched (no suffix: DICOM files often have none),
#: in the order an importer tries them for a stem
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom", "")


@dataclass
class ImageProperties:
    """What a reader learned about an image besides its pixels.

    Attributes:
        path: the file read.
        format: ``png``, ``jpeg``, ``tiff`` or ``dicom`` (told from the content).
        shape: the array's shape, ``(H, W)`` or ``(H, W, C)``.
        dtype: the array's dtype name.
        bits: bits per sample as stored (8, 16, ...).
        channels: 1 for grey, 3 for colour.
        photometric: ``MONOCHROME2`` for grey (after any MONOCHROME1 inversion), ``RGB``.
        spacing_mm: ``(row, column)`` pixel spacing in millimetres, or ``None`` when unknown.
        spacing_source: the DICOM attribute the spacing came from, or ``None``.
        value_range: ``(low, high)`` of the intensity scale the array lives on, used to map
            it to ``[0, 1]`` (the VOI window for DICOM; for a 16-bit PNG or TIFF the depth its values
            fit, :func:`container_depth`; the dtype's range otherwise).
        notes: what was applied (rescale, VOI, inversion), for the record.
        content_box: ``(x0, y0, x1, y1)`` (end-exclusive) of the pixels that are image, where a
            DICOM's Pixel Padding Value frames it; ``None`` when the whole array is image.
        modality: a DICOM file's Modality (0008,0060), such as ``CR``, ``DX`` or ``CT``; ``None``
            for other formats or when the file does not say.
        orientation: the EXIF Orientation (1-8) a JPEG, TIFF or PNG carried and that was applied, so
            that the array, and every mask and box made from it, is upright as viewers show the file;
            ``None`` when the file has none or it is 1 (upright already).
        header_clinical: what a DICOM header says of the patient and the view, as the model's
            clinical fields (:func:`osteolens.io.dicom_clinical.header_clinical`); ``None`` for
            other formats or when the header says none of it.
        study_uid: a DICOM file's Study Instance UID (the examination its views belong to); ``None``
            for other formats or when the header has none.
    """

    path: str
    format: str
    shape: tuple[int, ...]
    dtype: str
    bits: int
    channels: int
    photometric: str
    spacing_mm: tuple[float, float] | None = None
    spacing_source: str | None = None
    value_range: tuple[float, float] = (0.0, 255.0)
    notes: list[str] = field(default_factory=list)
    content_box: tuple[int, int, int, int] | None = None
    modality: str | None = None
    orientation: int | None = None
    header_clinical: dict | None = None
    study_uid: str | None = None

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return asdict(self)


def sniff_format(path: str | Path) -> str:
    """Tell an image's format from its first bytes.

    Args:
        path: the file.

    Returns:
        ``png``, ``jpeg``, ``tiff``, ``bmp`` or ``dicom``.

    Raises:
        ImageReadError: the file is missing, empty, or none of those formats.
    """
    p = Path(path)
    if not p.exists():
        if p.is_symlink():
            raise ImageReadError(p, f"broken symbolic link: it points to {os.readlink(p)}, which does not exist")
        raise ImageReadError(p, "file not found")
    if p.is_dir():
        raise ImageReadError(p, "is a folder, not an image file")
    with open(p, "rb") as fh:
        head = fh.read(132)
    if not head:
        raise ImageReadError(p, "file is empty (0 bytes)")
    if (len(head) >= 132 and head[128:132] == b"DICM") or is_bare_dicom_head(head):
        return "dicom"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    looks = "text" if _looks_like_text(head) else "binary data"
    raise ImageReadError(
        p,
        f"not a supported image: the content is {looks} starting with {head[:16]!r}, "
        "not PNG, JPEG, TIFF, BMP or DICOM (Part 10, 'DICM' at byte 128, or a bare little-endian dataset)",
    )


#: value representations an explicit-VR element header may name (PS3.5 6.2)
_VRS = frozenset(b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US "
                 b"UT UV".split())


def is_bare_dicom_head(head: bytes) -> bool:
    """Whether a file's first bytes look like a bare DICOM dataset: no 128-byte preamble and no file meta header, as
    some older exporters and archives store objects. Such a dataset starts, little endian, with a group 0008
    element (Specific Character Set, Image Type, SOP Class UID ...) in explicit or implicit VR encoding.

    >>> is_bare_dicom_head(b"\\x08\\x00\\x16\\x00UI\\x1c\\x001.2.840.10008.5.1.4.1.1.1.1")
    True
    >>> is_bare_dicom_head(b"\\x08\\x00\\x16\\x00\\x1c\\x00\\x00\\x001.2.840.")
    True
    >>> is_bare_dicom_head(b"\\x08\\x00GIF89a garbage")
    False
    """
    if len(head) < 8 or head[:2] != b"\x08\x00":
        return False
    return head[4:6] in _VRS or int.from_bytes(head[4:8], "little") < 1024


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c >= 32 or c in (9, 10, 13) for c in head)


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS,
               reader: str = READER) -> tuple[np.ndarray, ImageProperties]:
    """Read a PNG, JPEG, TIFF, BMP or DICOM image.

    Args:
        path: the image file; its format is told from its content.
        max_pixels: a larger image is refused before it is decoded (:func:`check_pixel_count`); ``reader`` names
            whose limit that is in the message.

    Returns:
        ``(array, properties)``: the array is ``(H, W)`` for grey or ``(H, W, 3)`` for colour.

    Raises:
        ImageReadError: missing, empty, truncated, unsupported or multi-frame input, or any other
            failure of the decoders on the file's content (named with the decoder's own message), so
            that a batch can record the file and go on.
    """
    fmt = sniff_format(path)
    try:
        if fmt == "dicom":
            from osteolens.io.dicom import read_dicom_image

            return read_dicom_image(path, max_pixels, reader)
        return _read_pillow(Path(path), fmt, max_pixels, reader)
    except ImageReadError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, OSError, OverflowError) as exc:
        # pydicom and Pillow raise these for malformed headers and data the checks above do not foresee
        raise ImageReadError(path, f"cannot read this {fmt.upper()} file: {type(exc).__name__}: {exc}") from exc


def _read_pillow(path: Path, fmt: str, max_pixels: int, reader: str) -> tuple[np.ndarray, ImageProperties]:
    try:
        # From an open file, not a path: Pillow 13.0 memory-maps uncompressed single-strip TIFFs opened by path
        # and then lays out those with an EXIF Orientation of 5-8 with width and height swapped (scrambled pixels).
        with open(path, "rb") as fh:
            with warnings.catch_warnings():  # Pillow warns of an image over its limit; check_pixel_count refuses it
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(fh)
            with im:
                check_pixel_count(path, *im.size, max_pixels, reader)
                orientation = exif_orientation(im)
                im.load()  # decodes everything: a truncated file fails here
                n_frames = getattr(im, "n_frames", 1)
                mode = im.mode
                pending = exif_orientation(im)  # Pillow's TIFF reader turns the image itself and drops the tag; JPEG's does not
                alpha_notes: list[str] = []
                arr = _pillow_to_array(im.transpose(ORIENTATIONS[pending][1]) if pending else im, path, alpha_notes)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:  # over twice Pillow's limit: refused by Image.open itself
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(claimed.group(1)) / 1e6:.0f} megapixels" if claimed else f"too large ({exc})"
        raise _over_limit(path, size, max_pixels, reader) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        problem = str(exc) or type(exc).__name__
        if isinstance(exc, UnidentifiedImageError):  # its text is "cannot identify image file <_io.BufferedReader ...>"
            problem = f"its {fmt.upper()} header is damaged or of a kind Pillow cannot read"
        if "truncated" in problem.lower() or "broken" in problem.lower():
            problem = f"truncated or corrupt {fmt.upper()} ({problem})"
        else:
            problem = f"cannot decode {fmt.upper()}: {problem}"
        raise ImageReadError(path, problem) from exc
    if n_frames > 1:
        raise ImageReadError(path, f"has {n_frames} frames/pages; osteolens reads single 2-D images")
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    bits = 16 if arr.dtype == np.uint16 else (32 if arr.dtype.itemsize == 4 else 8)
    notes = [f"pillow mode {mode}", *alpha_notes]
    if orientation:
        stored_w, stored_h = arr.shape[:2] if orientation >= 5 else arr.shape[1::-1]  # 5-8 swap width and height
        notes.append(f"EXIF Orientation {orientation} applied ({ORIENTATIONS[orientation][0]}): the image, its mask and "
                     f"boxes are upright as viewers show it; stored {stored_w}x{stored_h} (width x height)")
    if arr.dtype == np.uint16:
        depth = container_depth(arr)
        high = float(2**depth - 1)
        if depth < 16:
            notes.append(f"values fit {depth} of the 16 bits stored: scaled to 0-{2**depth - 1} (the file records no "
                         "bit depth; detectors store 10-, 12- and 14-bit images in 16-bit files)")
    else:
        high = float(np.iinfo(arr.dtype).max) if arr.dtype.kind in "ui" else float(arr.max())
    low = min(0.0, float(arr.min())) if arr.dtype.kind == "f" else 0.0  # floats have no container range: keep negatives
    props = ImageProperties(
        path=str(path),
        format=fmt,
        shape=tuple(arr.shape),
        dtype=arr.dtype.name,
        bits=bits,
        channels=channels,
        photometric="MONOCHROME2" if channels == 1 else "RGB",
        value_range=(low, high),
        notes=notes,
        orientation=orientation,
    )
    return arr, props


#: what each EXIF Orientation value (TIFF 6.0 tag 274) asks a viewer to do to the stored pixels, and
#: the Pillow transpose that does it
ORIENTATIONS = {
    2: ("mirrored left-right", Image.Transpose.FLIP_LEFT_RIGHT),
    3: ("turned 180 degrees", Image.Transpose.ROTATE_180),
    4: ("mirrored top-bottom", Image.Transpose.FLIP_TOP_BOTTOM),
    5: ("mirrored about the main diagonal", Image.Transpose.TRANSPOSE),
    6: ("turned 90 degrees clockwise", Image.Transpose.ROTATE_270),
    7: ("mirrored about the anti-diagonal", Image.Transpose.TRANSVERSE),
    8: ("turned 90 degrees anticlockwise", Image.Transpose.ROTATE_90),
}


def exif_orientation(im: Image.Image) -> int | None:
    """The EXIF Orientation of an open Pillow image when it asks for a turn or mirror (2-8), else ``None``.

    Phones, cameras and some export tools store a radiograph sideways and set this tag
    instead of turning the pixels; every viewer turns it back, so the model must too, or it
    reads (and draws its mask on) a sideways image. Values outside 1-8 are ignored.

    >>> exif_orientation(Image.new("L", (4, 2))) is None
    True
    """
    try:
        value = im.getexif().get(0x0112)
    except (OSError, ValueError, SyntaxError):  # a corrupt EXIF block: read the pixels as stored
        return None
    return int(value) if isinstance(value, int) and value in ORIENTATIONS else None


#: bit depths an image may fill inside a 16-bit PNG or TIFF
CONTAINER_DEPTHS = (8, 10, 12, 14, 16)


def container_depth(arr: np.ndarray) -> int:
    """The smallest of :data:`CONTAINER_DEPTHS` that holds every value of a 16-bit image.

    A 12-bit detector image saved as a 16-bit PNG uses values 0-4095 only; scaled to the 16-bit
    range it would read as nearly black (0-6% grey), which changes the model's answer. PNG and
    TIFF files do not reliably record the depth, so it is told from the values: a radiograph
    meant for display fills most of its scale.

    >>> container_depth(np.array([[0, 4095]], np.uint16)), container_depth(np.array([[0, 4096]], np.uint16))
    (12, 14)
    >>> container_depth(np.array([[0, 65280]], np.uint16))
    16
    """
    top = int(arr.max()) if arr.size else 0
    return next(d for d in CONTAINER_DEPTHS if top <= 2**d - 1)


def _pillow_to_array(im: Image.Image, path: Path, notes: list[str]) -> np.ndarray:
    mode = im.mode
    if mode in ("1", "L", "P", "LA", "PA", "RGB", "RGBA", "CMYK", "YCbCr"):
        if mode in ("P", "PA"):
            im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
        if im.mode in ("LA", "RGBA"):
            im = flatten_alpha(im, notes)
        return np.asarray(im.convert("L" if mode in ("1", "L", "LA") else "RGB"))
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im)
        if arr.dtype != np.uint16:
            if arr.min() < 0 or arr.max() > 65535:
                raise ImageReadError(path, f"{mode} pixels outside 0..65535 are not supported")
            arr = arr.astype(np.uint16)
        return arr
    if mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        if not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise ImageReadError(path, f"{bad} of {arr.size} pixels are not numbers (NaN or infinity) in this "
                                       "floating-point image; a radiograph's pixels all have a value")
        return arr
    raise ImageReadError(path, f"unsupported pixel mode {mode!r}")


def flatten_alpha(im: Image.Image, notes: list[str]) -> Image.Image:
    """An ``LA`` or ``RGBA`` image without its alpha: composited over black where it is not opaque.

    A radiograph viewer shows transparent pixels on its black background, and black is air on a
    radiograph, so the flat black that results is cut with the other flat borders. Dropping the
    alpha instead would show whatever the file keeps under it (often white, or stale pixels).
    Adds a note when any pixel was not opaque.

    >>> im = Image.new("LA", (4, 2), (200, 255)); im.putpixel((0, 0), (200, 0))
    >>> notes = []; np.asarray(flatten_alpha(im, notes)).tolist(), notes
    ([[0, 200, 200, 200], [200, 200, 200, 200]], ['transparency composited over black (12.5% of pixels not opaque)'])
    """
    alpha = np.asarray(im.getchannel("A"))
    colour = im.convert(im.mode[:-1])
    if alpha.min() == 255:
        return colour
    notes.append(f"transparency composited over black ({np.mean(alpha < 255):.1%} of pixels not opaque)")
    return Image.composite(colour, Image.new(colour.mode, colour.size, 0), Image.fromarray(alpha))


def to_unit_grey(arr: np.ndarray, props: ImageProperties) -> np.ndarray:
    """Map a read image to the model convention: 2-D float32 in ``[0, 1]``.

    Colour is turned to grey by ITU-R BT.601 luma. The scale is ``props.value_range``.

    Args:
        arr: an array from :func:`read_image`.
        props: its properties.

    Returns:
        A ``(H, W)`` float32 array in ``[0, 1]``.
    """
    x = arr.astype(np.float32)
    if x.ndim == 3:
        x = x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
    low, high = props.value_range
    if high <= low:
        return np.zeros_like(x, dtype=np.float32)
    return np.clip((x - low) / (high - low), 0.0, 1.0).astype(np.float32)


def save_png(arr: np.ndarray, path_or_buffer, compress_level: int = 1) -> None:
    """Write a uint8 array as PNG, favouring speed (level 1 compresses about as well as 6 for
    masks and overlays and encodes several times faster, which matters in the service)."""
    Image.fromarray(arr).save(path_or_buffer, format="PNG", compress_level=compress_level)


MAX_MASK_LABELS = 64  # a label map with more labels than this is taken for a grey picture...
MAX_MASK_MIDDLE_SHARE = 0.05  # ...when more than this share of its pixels lie between 10% and 90% of its maximum


def read_mask(path: str | Path, expected_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a binary mask or label map (see :func:`mask_from_array` for what is foreground).

    Args:
        path: PNG/TIFF/JPEG/DICOM mask file.
        expected_shape: ``(H, W)`` the mask must have, if given.

    Returns:
        A ``(H, W)`` bool array.

    Raises:
        ImageReadError: unreadable, a grey picture rather than a mask, or its size differs from
            ``expected_shape``.
    """
    arr, props = read_image(path)
    return mask_from_array(arr, path, expected_shape, lossy=props.format == "jpeg")


def mask_from_array(arr: np.ndarray, path: str | Path, expected_shape: tuple[int, int] | None = None,
                    lossy: bool = False) -> np.ndarray:
    """The bool mask of a read mask image, checked against ``expected_shape``.

    Foreground is any non-zero pixel, so a label map (0, 1, 2, ...) keeps all its labels. A mask
    stored lossily (``lossy``: JPEG) rings around its edges with faint non-zero pixels, which
    would grow the lesion by a pixel or two all round, so there foreground is at least half
    the maximum. A picture whose pixels are largely mid-grey (an image, or a probability map
    that was never thresholded) is refused rather than read as one large lesion.

    >>> ringing = np.array([[0, 3, 250], [2, 255, 251]], np.uint8)
    >>> mask_from_array(ringing, "m.png").sum(), mask_from_array(ringing, "m.jpg", lossy=True).sum()
    (np.int64(5), np.int64(3))
    """
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    if expected_shape is not None and tuple(arr.shape) != tuple(expected_shape[:2]):
        raise ImageReadError(
            path, f"mask size {arr.shape[1]}x{arr.shape[0]} differs from image size "
            f"{expected_shape[1]}x{expected_shape[0]} (width x height)"
        )
    top = float(arr.max()) if arr.size else 0.0
    if top <= 0:
        return arr > 0
    middle = float(((arr > 0.1 * top) & (arr < 0.9 * top)).mean())
    if middle > MAX_MASK_MIDDLE_SHARE and (levels := len(np.unique(arr))) > MAX_MASK_LABELS:
        raise ImageReadError(path, f"not a mask: {middle:.0%} of its pixels are grey levels between 10% and 90% of its "
                                   f"maximum, in {levels} levels (a mask holds 0 and one value per label; "
                                   "threshold a probability map first)")
    return arr >= top / 2 if lossy else arr > 0
