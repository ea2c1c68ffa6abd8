"""Saliency from class activation maps, and how well it points at the lesion.

The network's class head is linear on average-pooled features, so the class activation map
``sum_k w_ck A_k`` equals Grad-CAM's map for that class (Grad-CAM's channel weights are the
spatial mean of the gradients, which for such a head is ``w_ck / (H W)``, a constant factor).
"""

from __future__ import annotations

import numpy as np

from osteolens.transforms.preprocess import resize


def saliency_map(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """ReLU, scale to [0, 1] and resize a ``(h, w)`` class activation map to ``size = (H, W)``."""
    c = np.maximum(np.asarray(cam, dtype=np.float32), 0)
    peak = float(c.max())
    c = c / peak if peak > 0 else c
    return np.clip(resize(c, size), 0, 1)


def pointing_game_hit(saliency: np.ndarray, truth: np.ndarray) -> bool:
    """True when the saliency's maximum lies inside the true lesion mask (Zhang et al. 2016)."""
    idx = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
    return bool(np.asarray(truth, bool)[idx])


def energy_inside(saliency: np.ndarray, truth: np.ndarray) -> float:
    """Share of the saliency's total mass that falls inside the true mask (Score-CAM's energy-based pointing)."""
    s = np.asarray(saliency, dtype=np.float64)
    total = s.sum()
    return float(s[np.asarray(truth, bool)].sum() / total) if total > 0 else float("nan")
