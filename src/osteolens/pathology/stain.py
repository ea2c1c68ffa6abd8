"""Macenko stain normalisation (torchstain's NumPy implementation) with a safe fallback.

Tiles are mapped onto torchstain's standard H&E reference (no reference tile needed, so results
do not depend on which tile was picked). A tile with too little tissue to estimate its stain
vectors is returned unchanged, and the caller is told.
"""

from __future__ import annotations

import numpy as np


def macenko_normalise(rgb: np.ndarray) -> tuple[np.ndarray, bool]:
    """Normalise an RGB uint8 H&E tile.

    Returns:
        ``(tile, normalised)``: the normalised tile (uint8), and False when it was left as is
        (too little stained tissue to estimate stain vectors).
    """
    from torchstain.numpy.normalizers import NumpyMacenkoNormalizer

    norm = NumpyMacenkoNormalizer()
    try:
        with np.errstate(all="ignore"):
            out, _, _ = norm.normalize(I=np.asarray(rgb, dtype=np.uint8), stains=False)
    except (np.linalg.LinAlgError, ValueError, IndexError):
        return np.asarray(rgb, dtype=np.uint8), False
    if out is None or not np.isfinite(out).all():
        return np.asarray(rgb, dtype=np.uint8), False
    return np.clip(out, 0, 255).astype(np.uint8), True
