"""Deterministic preprocessing shared by training and inference.

An image read by :func:`osteolens.io.images.read_image` is turned into the network's input by
:func:`preprocess`: grey ``[0, 1]`` (see :func:`~osteolens.io.images.to_unit_grey`), resized to
``size x size`` (area interpolation when shrinking; aspect ratio is not kept, as in BTXRD),
replicated to three channels and normalised with the ImageNet mean and standard deviation.
"""

from __future__ import annotations

import math

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize(grey: np.ndarray, size: int | tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Resize a 2-D array to ``size`` (int: square; tuple: ``(height, width)``)."""
    import cv2

    h, w = (size, size) if isinstance(size, int) else size
    if grey.shape == (h, w):
        return grey
    if nearest:
        interp = cv2.INTER_NEAREST
    else:
        interp = cv2.INTER_AREA if h * w < grey.shape[0] * grey.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(grey, (w, h), interpolation=interp)


def to_uint8(grey: np.ndarray) -> np.ndarray:
    """``[0, 1]`` float to uint8 (the form cached for training)."""
    return np.clip(np.rint(grey * 255.0), 0, 255).astype(np.uint8)


def normalise(grey01: np.ndarray) -> np.ndarray:
    """``(..., H, W)`` grey in ``[0, 1]`` -> ``(..., 3, H, W)`` float32 ImageNet-normalised."""
    x = np.asarray(grey01, dtype=np.float32)[..., None, :, :]
    mean = np.asarray(IMAGENET_MEAN, np.float32).reshape(3, 1, 1)
    std = np.asarray(IMAGENET_STD, np.float32).reshape(3, 1, 1)
    return (x - mean) / std


def enlarged_size(size: int, factor: float = 1.25) -> int:
    """The input size ``factor`` times ``size``, rounded up to a multiple of 32 (the network's stride).

    >>> enlarged_size(256), enlarged_size(64)
    (320, 96)
    """
    return 32 * math.ceil(size * factor / 32 - 1e-9)


def network_grey(grey01: np.ndarray, size: int) -> np.ndarray:
    """Grey ``[0, 1]`` image of any size -> the ``size`` x ``size`` grey a network reads, in ``[0, 1]``.

    Rounded through uint8 so that inference sees exactly what training (which caches uint8)
    saw.
    """
    return to_uint8(resize(grey01.astype(np.float32), size)).astype(np.float32) / 255.0


def preprocess(grey01: np.ndarray, size: int) -> np.ndarray:
    """Grey ``[0, 1]`` image of any size -> ``(3, size, size)`` network input (:func:`network_grey`, normalised)."""
    return normalise(network_grey(grey01, size))


def uniform_border_box(grey01: np.ndarray, tolerance: float = 1.5 / 255, min_keep: float = 0.5) -> tuple[int, int, int, int] | None:
    """The box inside an image's uniform border: edge rows and columns of one flat grey.

    A row (column) is uniform when its values span at most ``tolerance`` (on the ``[0, 1]``
    scale). The border on each side is the run of uniform rows or columns from that edge;
    what lies inside is the image. An export that letterboxes a radiograph in black, or a
    collimated field saved without its DICOM padding attribute, has such a border and nothing
    says it is not image.

    Args:
        grey01: 2-D image in ``[0, 1]``.
        tolerance: the largest span of grey values a uniform row or column may have.
        min_keep: if less than this share of either side would remain, the image is too flat
            to tell border from image and ``None`` is returned.

    Returns:
        ``(x0, y0, x1, y1)`` end-exclusive, or ``None`` when there is no border to crop (or the
        image is too flat to tell).

    Example:
        >>> g = np.zeros((10, 12), np.float32); g[2:9, 3:10] = np.linspace(0.2, 0.8, 7)[:, None]
        >>> uniform_border_box(g)
        (3, 2, 10, 9)
        >>> uniform_border_box(np.random.default_rng(0).random((8, 8))) is None
        True
    """
    h, w = grey01.shape
    edges = (grey01[0], grey01[-1], grey01[:, 0], grey01[:, -1])
    if not any(np.ptp(edge) <= tolerance for edge in edges):  # most images: no border, no full pass
        return None
    flat_rows = np.ptp(grey01, axis=1) <= tolerance
    flat_cols = np.ptp(grey01, axis=0) <= tolerance

    def run(flags: np.ndarray) -> int:
        return len(flags) if flags.all() else int(np.argmin(flags))

    top, bottom, left, right = run(flat_rows), run(flat_rows[::-1]), run(flat_cols), run(flat_cols[::-1])
    x0, y0, x1, y1 = left, top, w - right, h - bottom
    if x1 - x0 < min_keep * w or y1 - y0 < min_keep * h:
        return None
    return int(x0), int(y0), int(x1), int(y1)


#: a noisy border's defaults (:func:`noisy_border_box`): grey tolerance floor, share of a line that must
#: follow it, share of the first image line that must step away from it, and the side of the working copy
NOISY_TOLERANCE, NOISY_MIN_MATCH, NOISY_MIN_STEP, NOISY_MAX_SIDE = 4 / 255, 0.99, 0.5, 512


def _border_run(raw: np.ndarray, smooth: np.ndarray, tolerance: float, min_match: float, min_step: float,
                noise_factor: float) -> int:
    """How many lines from the edge (row 0 of ``raw`` / ``smooth``) form a noisy border; 0 when none."""
    # detector noise from neighbouring pixels along the outermost lines (robust to text in them)
    noise = 1.4826 * float(np.median(np.abs(np.diff(raw[:3], axis=1)))) / math.sqrt(2)
    tol = max(tolerance, noise_factor * noise)
    n, m = smooth.shape
    half = (n + 1) // 2 + 2  # a border never covers more than half the image (min_keep), so look no further
    lines = smooth[:half].astype(np.float64)
    x = np.arange(m, dtype=np.float64) - (m - 1) / 2
    slope = lines @ x / float(x @ x)
    fit = lines.mean(axis=1, keepdims=True) + slope[:, None] * x  # each line's own straight-line fit (a ramp)
    match = (np.abs(lines - fit) <= tol).mean(axis=1) >= min_match
    if match.all() or not match[0]:
        return 0
    r = int(np.argmin(match))
    # the border must end in a step along most of its length (a collimator's edge, a frame's edge), not fade
    # into the radiograph's own air, which looks the same line by line
    step = max(float((np.abs(lines[j] - fit[r - 1]) > tol).mean()) for j in range(r, min(r + 2, len(lines))))
    return r if step >= min_step else 0


def noisy_border_box(grey01: np.ndarray, tolerance: float = NOISY_TOLERANCE, min_match: float = NOISY_MIN_MATCH,
                     min_step: float = NOISY_MIN_STEP, min_keep: float = 0.5, max_side: int = NOISY_MAX_SIDE,
                     noise_factor: float = 1.5) -> tuple[int, int, int, int] | None:
    """The box inside a border that is even but not flat: detector noise, a ramp, burnt-in text.

    Works on a copy of at most ``max_side`` pixels a side, smoothed so that noise and text strokes
    thinner than 5 of its pixels vanish (a 5-px median, then a 5-px grey opening and closing; straight
    edges survive all three). A line (row or column) from an edge belongs to the border when at least
    ``min_match`` of it lies within a tolerance of its own straight-line fit: the larger of
    ``tolerance`` and ``noise_factor`` times the noise measured along the outermost lines. The run
    of such lines is cut only if it ends in a step: at least ``min_step`` of the first line after it
    differs from the border. A radiograph's own air looks like a noisy border line by line, but fades
    into the skin; a frame or a collimator's shadow ends at a straight edge.

    Args:
        grey01: 2-D image in ``[0, 1]``.
        tolerance: the smallest tolerance, on the ``[0, 1]`` scale.
        min_match: share of a line that must follow its fit.
        min_step: share of the first image line that must differ from the border.
        min_keep: if less than this share of either side would remain, ``None``.
        max_side: side of the working copy (area-downsampled; boxes are mapped back, rounded to keep more).
        noise_factor: the tolerance in units of the measured noise.

    Returns:
        ``(x0, y0, x1, y1)`` end-exclusive, or ``None`` when there is no such border (or too little would remain).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> g = 0.03 + rng.normal(0, 0.01, (120, 100))
        >>> g[20:110, 15:90] = np.linspace(0.2, 0.9, 75)
        >>> noisy_border_box(g)
        (15, 20, 90, 110)
    """
    import cv2

    h, w = grey01.shape
    work = np.asarray(grey01, dtype=np.float32)
    scale = max(h, w) / max_side
    if scale > 1:
        work = cv2.resize(work, (max(1, round(w / scale)), max(1, round(h / scale))), interpolation=cv2.INTER_AREA)
    hs, ws = work.shape
    if min(hs, ws) < 8:
        return None
    kernel = np.ones((5, 5), np.uint8)
    smooth = cv2.medianBlur(work, 5)
    for op in (cv2.MORPH_OPEN, cv2.MORPH_CLOSE):
        smooth = cv2.morphologyEx(smooth, op, kernel, borderType=cv2.BORDER_REPLICATE)
    args = (tolerance, min_match, min_step, noise_factor)
    top = _border_run(work, smooth, *args)
    bottom = _border_run(work[::-1], smooth[::-1], *args)
    left = _border_run(work.T, smooth.T, *args)
    right = _border_run(work.T[::-1], smooth.T[::-1], *args)
    y0, y1 = math.floor(top * h / hs), h - math.floor(bottom * h / hs)
    x0, x1 = math.floor(left * w / ws), w - math.floor(right * w / ws)
    if x1 - x0 < min_keep * w or y1 - y0 < min_keep * h or (x0, y0, x1, y1) == (0, 0, w, h):
        return None
    return int(x0), int(y0), int(x1), int(y1)


def border_box(grey01: np.ndarray, tolerance: float, noisy: bool = False, min_keep: float = 0.5,
               passes: int = 3) -> tuple[int, int, int, int] | None:
    """The box inside an image's border: flat (:func:`uniform_border_box`), and with ``noisy`` also
    noisy (:func:`noisy_border_box`), each side cut as far as either finds.

    With ``noisy`` it looks again inside what it found (up to ``passes`` times), so that a noisy frame
    around a radiograph with a flat border of its own loses both. Nothing is cut that would leave less
    than ``min_keep`` of either side.

    Example:
        >>> g = np.zeros((40, 40), np.float32); g[5:35, 8:32] = np.linspace(0.2, 0.8, 24)
        >>> border_box(g, 1.5 / 255), border_box(g, 1.5 / 255, noisy=True)
        ((8, 5, 32, 35), (8, 5, 32, 35))
    """
    h, w = grey01.shape
    if not noisy:
        return uniform_border_box(grey01, tolerance, min_keep)
    x0, y0, x1, y1 = 0, 0, w, h
    for _ in range(passes):
        inner = grey01[y0:y1, x0:x1]
        ih, iw = inner.shape
        flat = uniform_border_box(inner, tolerance, min_keep=0.0) or (0, 0, iw, ih)
        rough = noisy_border_box(inner, min_keep=0.0) or (0, 0, iw, ih)
        cut = (max(flat[0], rough[0]), max(flat[1], rough[1]), min(flat[2], rough[2]), min(flat[3], rough[3]))
        if cut == (0, 0, iw, ih) or cut[2] - cut[0] < min_keep * w or cut[3] - cut[1] < min_keep * h:
            break
        x0, y0, x1, y1 = x0 + cut[0], y0 + cut[1], x0 + cut[2], y0 + cut[3]
    return None if (x0, y0, x1, y1) == (0, 0, w, h) else (int(x0), int(y0), int(x1), int(y1))


def network_box(grey01: np.ndarray, marked: tuple[int, int, int, int] | None,
                crop_tolerance: float | None, noisy: bool = False) -> tuple[int, int, int, int] | None:
    """The part of an image the network reads, ``(x0, y0, x1, y1)``, or ``None`` for all of it.

    First the box a reader found marked as image (a DICOM's Pixel Padding Value frame); then,
    for a model whose preprocessing crops borders (``crop_tolerance``; ``noisy`` for noisy ones
    too), the box inside such a border within it (:func:`border_box`), so that a radiograph reads
    the same whether or not a padded frame surrounds it. Training's cache and analysis both use it.

    Example:
        >>> g = np.zeros((12, 12), np.float32); g[3:9, 4:10] = np.linspace(0.2, 0.8, 6)
        >>> network_box(g, (1, 1, 11, 11), None), network_box(g, (1, 1, 11, 11), 0.01), network_box(g, None, None)
        ((1, 1, 11, 11), (4, 3, 10, 9), None)
    """
    h, w = grey01.shape
    x0, y0, x1, y1 = marked if marked is not None else (0, 0, w, h)
    if crop_tolerance is not None:
        inner = border_box(grey01[y0:y1, x0:x1], crop_tolerance, noisy)
        if inner is not None:
            x0, y0, x1, y1 = x0 + inner[0], y0 + inner[1], x0 + inner[2], y0 + inner[3]
    box = (int(x0), int(y0), int(x1), int(y1))
    return None if box == (0, 0, w, h) else box


def crop_settings(preprocessing: dict) -> tuple[float | None, bool]:
    """A model's border crop from its metadata's ``preprocessing``: ``(crop_uniform_border, crop_noisy_border)``;
    noisy borders count only with the flat-border crop, which comes first."""
    tolerance = preprocessing.get("crop_uniform_border")
    return tolerance, tolerance is not None and bool(preprocessing.get("crop_noisy_border", False))


def crop_preprocessing(crop_uniform_border: float | None, noisy: bool = False) -> dict:
    """The metadata's ``preprocessing`` entries for a border crop (what :func:`crop_settings` reads back),
    with the ``resize`` text that says what reaches the network."""
    return {"resize": resize_description(crop_uniform_border, noisy),
            **({"crop_uniform_border": float(crop_uniform_border)} if crop_uniform_border is not None else {}),
            **({"crop_noisy_border": True} if noisy and crop_uniform_border is not None else {})}


def resize_description(crop_uniform_border: float | None, noisy: bool = False) -> str:
    """The metadata's ``preprocessing.resize`` text: what part of an image reaches the network, and how it is resized."""
    region = "the whole image"
    if crop_uniform_border is not None:
        region = ("the image inside its flat borders (edge rows and columns spanning at most crop_uniform_border of the "
                  "grey range are cut)")
        if noisy:
            region += (" and its noisy ones (an even border, noise, ramp or burnt-in text allowed, that ends in a "
                       "straight edge; crop_noisy_border)")
    return (f"{region}, inside a DICOM's Pixel Padding Value frame, to image_size x image_size, aspect ratio not kept "
            "(as in BTXRD), area interpolation, rounded to uint8")
