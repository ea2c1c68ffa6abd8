"""The overlay a reader looks at: heat map, mask outline and boxes on the radiograph."""

from __future__ import annotations

import numpy as np

from osteolens import RESEARCH_NOTICE


def draw_overlay(grey01: np.ndarray, mask: np.ndarray | None, boxes: list, saliency: np.ndarray | None,
                 caption: str, heat_alpha: float = 0.35) -> np.ndarray:
    """An RGB uint8 image: the radiograph, the saliency as a heat map, the mask outline (green),
    the boxes (red), a caption on top and the research notice at the bottom.
    """
    import cv2

    h, w = grey01.shape
    base = np.repeat((np.clip(grey01, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    img = base.copy()
    if saliency is not None:
        heat = cv2.applyColorMap((saliency * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
        weight = (heat_alpha * saliency)[..., None]
        img = (img * (1 - weight) + heat * weight).astype(np.uint8)
    thick = max(1, round(min(h, w) / 256))
    if mask is not None and mask.any():
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(img, contours, -1, (0, 255, 0), thick)
    for x0, y0, x1, y1 in boxes:
        cv2.rectangle(img, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), (255, 40, 40), thick)
    band = max(14, round(min(h, w) / 18))
    canvas = np.zeros((h + 2 * band, w, 3), np.uint8)
    canvas[band:band + h] = img
    for text, y, colour in ((caption, int(band * 0.75), (255, 255, 255)),
                            (RESEARCH_NOTICE, h + band + int(band * 0.7), (255, 200, 0))):
        cv2.putText(canvas, text, (4, y), cv2.FONT_HERSHEY_SIMPLEX, _fit(text, w - 8, band), colour, 1, cv2.LINE_AA)
    return canvas


def _fit(text: str, width: int, band: int) -> float:
    """The largest font scale (up to band-relative) at which ``text`` fits ``width`` pixels."""
    import cv2

    scale = band / 30
    (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    return scale * min(1.0, width / max(tw, 1))
