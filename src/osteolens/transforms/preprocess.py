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
