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


def preprocess(grey01: np.ndarray, size: int) -> np.ndarray:
    """Grey ``[0, 1]`` image of any size -> ``(3, size, size)`` network input.

    Rounded through uint8 so that inference sees exactly what training (which caches uint8)
    saw.
    """
    small = to_uint8(resize(grey01.astype(np.float32), size)).astype(np.float32) / 255.0
    return normalise(small)


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


def network_box(grey01: np.ndarray, marked: tuple[int, int, int, int] | None,
                crop_tolerance: float | None) -> tuple[int, int, int, int] | None:
    """The part of an image the network reads, ``(x0, y0, x1, y1)``, or ``None`` for all of it.

    First the box a reader found marked as image (a DICOM's Pixel Padding Value frame); then,
    for a model whose preprocessing crops flat borders (``crop_tolerance``), the box inside such a
    border within it (:func:`uniform_border_box`), so that a radiograph reads the same whether or
    not a padded frame surrounds it. Training's cache and analysis both use it.

    Example:
        >>> g = np.zeros((12, 12), np.float32); g[3:9, 4:10] = np.linspace(0.2, 0.8, 6)
        >>> network_box(g, (1, 1, 11, 11), None), network_box(g, (1, 1, 11, 11), 0.01), network_box(g, None, None)
        ((1, 1, 11, 11), (4, 3, 10, 9), None)
    """
    h, w = grey01.shape
    x0, y0, x1, y1 = marked if marked is not None else (0, 0, w, h)
    if crop_tolerance is not None:
        inner = uniform_border_box(grey01[y0:y1, x0:x1], crop_tolerance)
        if inner is not None:
            x0, y0, x1, y1 = x0 + inner[0], y0 + inner[1], x0 + inner[2], y0 + inner[3]
    box = (int(x0), int(y0), int(x1), int(y1))
    return None if box == (0, 0, w, h) else box


def resize_description(crop_uniform_border: float | None) -> str:
    """The metadata's ``preprocessing.resize`` text: what part of an image reaches the network, and how it is resized."""
    region = ("the image inside its flat borders (edge rows and columns spanning at most crop_uniform_border of the grey "
              "range are cut)" if crop_uniform_border is not None else "the whole image")
    return (f"{region}, inside a DICOM's Pixel Padding Value frame, to image_size x image_size, aspect ratio not kept "
            "(as in BTXRD), area interpolation, rounded to uint8")
