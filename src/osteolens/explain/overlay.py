"""The overlay a reader looks at: heat map, mask outline and boxes on the radiograph."""

from __future__ import annotations

import numpy as np

from osteolens import RESEARCH_NOTICE

MIN_TEXT_SCALE = 0.45  # OpenCV's plain font at this scale is about 10 px tall: the smallest easily read


def draw_overlay(grey01: np.ndarray, mask: np.ndarray | None, boxes: list, saliency: np.ndarray | None,
                 caption: str, heat_alpha: float = 0.35, axis_line: list | None = None) -> np.ndarray:
    """An RGB uint8 image: the radiograph with its layers (:func:`draw_layers`) between a caption
    on top and the research notice at the bottom (:func:`add_captions`).

    Example:
        >>> import numpy as np
        >>> out = draw_overlay(np.zeros((300, 256)), None, [], None, "normal")
        >>> out.shape[1], out.shape[0] > 300 + 2 * 14
        (256, True)
    """
    return add_captions(draw_layers(grey01, mask, boxes, saliency, heat_alpha, axis_line), caption)


def draw_layers(grey01: np.ndarray, mask: np.ndarray | None, boxes: list, saliency: np.ndarray | None,
                heat_alpha: float = 0.35, axis_line: list | None = None) -> np.ndarray:
    """The radiograph in RGB with the saliency as a heat map, the mask outline (green), the
    boxes (red) and the measured long axis (cyan), lines about 1 px per 256 px of the shorter side.

    Args:
        grey01: ``(H, W)`` radiograph in ``[0, 1]``.
        mask: ``(H, W)`` bool tumour mask, or None.
        boxes: ``[(x0, y0, x1, y1), ...]`` in pixels, end-exclusive.
        saliency: ``(H, W)`` map in ``[0, 1]``, or None; a pixel's colour is
            ``(1 - a) * grey + a * jet(saliency)`` with ``a = heat_alpha * saliency``.
        axis_line: ``[x0, y0, x1, y1]``, the largest lesion's long axis as measured, or None.

    Returns:
        ``(H, W, 3)`` uint8.
    """
    import cv2

    h, w = grey01.shape
    grey8 = (np.clip(grey01, 0, 1) * 255).astype(np.uint8)
    img = cv2.cvtColor(grey8, cv2.COLOR_GRAY2RGB)
    if saliency is not None:
        sal = np.clip(saliency, 0, 1).astype(np.float32)
        heat = cv2.cvtColor(cv2.applyColorMap((sal * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
        weight = heat_alpha * sal
        # OpenCV's per-pixel blend, rounded: a few times faster than NumPy on a full-size radiograph
        img = cv2.blendLinear(img, heat, 1 - weight, weight)
    thick = max(1, round(min(h, w) / 256))
    if mask is not None and mask.any():
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(img, contours, -1, (0, 255, 0), thick)
    for x0, y0, x1, y1 in boxes:
        cv2.rectangle(img, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), (255, 40, 40), thick)
    if axis_line:
        x0, y0, x1, y1 = (int(v) for v in axis_line)
        cv2.line(img, (x0, y0), (x1, y1), (0, 220, 255), thick)
    return img


def add_captions(picture: np.ndarray, caption: str) -> np.ndarray:
    """``picture`` between a black band with ``caption`` (white) and one with the research notice
    (amber). The text grows with the picture and never falls below a legible size: on a narrow
    picture it wraps over more lines instead of shrinking.

    Returns:
        ``(top + H + bottom, W, 3)`` uint8, the picture's rows unchanged in the middle.
    """
    h, w = picture.shape[:2]
    scale = max(MIN_TEXT_SCALE, min(h, w) / 540)
    top = _text_band(caption, w, scale, (255, 255, 255))
    bottom = _text_band(RESEARCH_NOTICE, w, scale, (255, 200, 0))
    return np.concatenate([top, picture, bottom], axis=0)


def _text_band(text: str, width: int, scale: float, colour: tuple[int, int, int]) -> np.ndarray:
    """A black ``(rows, width, 3)`` band with ``text`` in ``colour``, broken between words over as
    many lines as it needs at ``scale``; a single word wider than the band is shrunk to fit."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    room = max(width - 8, 1)

    def text_width(t: str, sc: float) -> int:
        return cv2.getTextSize(t, font, sc, 1)[0][0]

    lines: list[str] = []
    for word in text.split():
        if lines and text_width(lines[-1] + " " + word, scale) <= room:
            lines[-1] += " " + word
        else:
            lines.append(word)
    lines = lines or [""]
    scale = min([scale] + [scale * room / text_width(t, scale) for t in lines if text_width(t, scale) > room])
    (_, height), baseline = cv2.getTextSize("Ag", font, scale, 1)
    step = height + baseline + max(2, round(0.3 * height))
    band = np.zeros((step * len(lines) + baseline + 4, width, 3), np.uint8)
    stroke = max(1, round(scale / 2))
    for i, line in enumerate(lines):
        cv2.putText(band, line, (4, 4 + height + i * step), font, scale, colour, stroke, cv2.LINE_AA)
    return band
