"""Zoomed-in views of an image: the geometry shared by training and inference, in NumPy only.

The training's lesion-zoom augmentation (:mod:`osteolens.transforms.augment`) and the
inference's second look (:mod:`osteolens.inference.second_look`) frame a lesion the same way.
This module holds that framing without PyTorch, so that inference never imports it (importing
torch costs about 2 s, which the first analysis after a start would pay).
"""

from __future__ import annotations

import numpy as np


def zoom_view(box: tuple[float, float, float, float], shape: tuple[int, int], context: float,
              max_zoom: float) -> tuple[float, np.ndarray]:
    """Zoom factor (>= 1) and view centre (normalised ``[-1, 1]`` x, y) that frame a box.

    The box ``(x0, y0, x1, y1)`` (exclusive ends, pixels of an image of ``shape``) gets its longer
    side to ``1 / context`` of the view; the zoom is capped at ``max_zoom`` and the view, ``2 / zoom``
    wide in normalised units, is kept inside the image.

    Example:
        >>> z, c = zoom_view((60, 40, 70, 50), (100, 100), 5.0, 4.0)
        >>> float(z), [round(float(v), 2) for v in c]
        (2.0, [0.3, -0.1])
    """
    h, w = shape
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) / max(h, w)
    zoom = float(np.clip(1.0 / (context * max(side, 1e-6)), 1.0, max_zoom))
    return zoom, inside_image(np.array([(x0 + x1) / w - 1, (y0 + y1) / h - 1]), zoom)


def inside_image(centre: np.ndarray, zoom: float) -> np.ndarray:
    """The view centre moved, if need be, so that a view zoomed by ``zoom`` stays inside the image."""
    half = 1.0 / zoom
    return np.clip(centre, -1 + half, 1 - half)


def view_pixels(zoom: float, centre: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """The view of :func:`zoom_view` as a pixel box ``(x0, y0, x1, y1)`` of an image of ``shape``."""
    h, w = shape
    half = 1.0 / zoom
    x0, x1 = (centre[0] - half + 1) / 2 * w, (centre[0] + half + 1) / 2 * w
    y0, y1 = (centre[1] - half + 1) / 2 * h, (centre[1] + half + 1) / 2 * h
    return (max(0, int(round(x0))), max(0, int(round(y0))), min(w, int(round(x1))), min(h, int(round(y1))))
