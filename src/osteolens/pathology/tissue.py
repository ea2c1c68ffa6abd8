"""Tissue detection on H&E tiles: skip glass background and pen marks.

A pixel is tissue when its optical density is above background and it is not pen ink. H&E
stains are pink-purple; pen marks are strongly saturated green, blue or black, or very dark.

Example:
    >>> import numpy as np
    >>> white = np.full((8, 8, 3), 245, np.uint8)
    >>> round(tissue_fraction(white), 2)
    0.0
"""

from __future__ import annotations

import numpy as np


def tissue_mask(rgb: np.ndarray, od_threshold: float = 0.15) -> np.ndarray:
    """Boolean mask of tissue pixels in an RGB uint8 tile (background and pen ink excluded)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {rgb.shape}")
    x = rgb.astype(np.float32)
    od = -np.log((x + 1) / 256.0)
    tissue = od.max(axis=2) > od_threshold
    return tissue & ~pen_mask(rgb)


def pen_mask(rgb: np.ndarray) -> np.ndarray:
    """Pixels that look like marker ink: green or blue dominance with high saturation, or near-black."""
    x = np.asarray(rgb).astype(np.int16)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    green = (g > r + 20) & (g > b)
    blue = (b > r + 30) & (b > g + 10)
    black = x.max(axis=2) < 40
    return green | blue | black


def tissue_fraction(rgb: np.ndarray) -> float:
    """Share of tissue pixels in a tile."""
    return float(tissue_mask(rgb).mean())
