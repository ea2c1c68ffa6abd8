"""From the network's tumour-probability map to a lesion mask, boxes and box scores.

The network's mask is often fragmented: one lesion comes out as a large blob and a few specks.
Post-processing, with parameters chosen on the validation split and stored in the model's
metadata (``calibration.mask_postprocess``), turns it into lesions:

1. threshold the probability map (at the input's size, or at :func:`working_shape` for a
   radiograph larger than :data:`POSTPROCESS_MAX_SIDE`; :func:`to_input_size` then brings the
   mask and boxes to the input's pixels);
2. morphological closing with a disc of radius ``closing`` x the image's shorter side
   (joins the pieces of one lesion);
3. drop components under ``min_component`` of the image area and those under
   ``min_fraction`` of the largest component's area;
4. optionally fill holes;
5. one box per remaining component, scored P(tumour) x the component's mean probability,
   so that a faint speck ranks below a confident lesion.

Example:
    >>> import numpy as np
    >>> prob = np.zeros((100, 100)); prob[20:60, 20:60] = 0.9; prob[80:83, 80:83] = 0.6
    >>> mask, boxes, scores = lesion_components(prob, 0.8, MaskPostprocess(min_fraction=0.1))
    >>> boxes
    [(20, 20, 60, 60)]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

MIN_COMPONENT_FRACTION = 0.001  # components under 0.1% of the image are specks
#: Longest side at which a probability map is post-processed. The network's mask has at most its
#: input's resolution (320 px for the shipped model), so a 3,000-px radiograph holds no more detail
#: in its interpolated map than a 640-px one, while closing and labelling it took seconds.
POSTPROCESS_MAX_SIDE = 640


@dataclass(frozen=True)
class MaskPostprocess:
    threshold: float = 0.5
    closing: float = 0.0
    min_fraction: float = 0.0
    fill_holes: bool = False
    min_component: float = MIN_COMPONENT_FRACTION

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_calibration(cls, calib: dict) -> "MaskPostprocess":
        """The model's recorded post-processing; older models: their mask threshold, nothing else."""
        if "mask_postprocess" in calib:
            return cls(**calib["mask_postprocess"])
        return cls(threshold=float(calib.get("mask_threshold", 0.5)))


def flip_mean_probability(mask_logits: np.ndarray) -> np.ndarray:
    """Mask probability of an image from the ``(2, 1, H, W)`` logits of it and its left-right flip."""
    prob = 1 / (1 + np.exp(-mask_logits[:, 0]))
    return (prob[0] + prob[1][:, ::-1]) / 2


def _disc(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return xx**2 + yy**2 <= radius**2


def lesion_components(mask_prob: np.ndarray, p_tumour: float, pp: MaskPostprocess) -> tuple[np.ndarray, list, list]:
    """Apply :class:`MaskPostprocess` to a probability map at the input's size.

    Returns:
        (boolean mask, boxes ``(x0, y0, x1, y1)``, box scores), boxes sorted by score.
    """
    h, w = mask_prob.shape
    mask = mask_prob >= pp.threshold
    radius = int(round(pp.closing * min(h, w)))
    if radius > 0 and mask.any():
        import cv2  # 25x faster than scipy's binary closing with a disc

        pad = radius + 1
        padded = np.pad(mask, pad).astype(np.uint8)
        mask = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, _disc(radius).astype(np.uint8))[pad:-pad, pad:-pad].astype(bool)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return mask, [], []
    areas = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    keep = (areas >= max(4, pp.min_component * h * w)) & (areas >= pp.min_fraction * areas.max())
    kept = np.flatnonzero(keep) + 1
    mask = np.isin(labels, kept)
    if pp.fill_holes:
        mask = ndimage.binary_fill_holes(mask)
        labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
        kept = np.arange(1, n + 1)
    means = ndimage.mean(mask_prob, labels, index=kept) if len(kept) else []
    boxes, scores = [], []
    slices = ndimage.find_objects(labels)
    for k, mean in zip(kept, means):
        sl = slices[k - 1]
        boxes.append((sl[1].start, sl[0].start, sl[1].stop, sl[0].stop))
        scores.append(round(float(p_tumour) * float(mean), 6))
    order = np.argsort(scores)[::-1]
    return mask, [boxes[i] for i in order], [scores[i] for i in order]


def working_shape(shape: tuple[int, int], max_side: int = POSTPROCESS_MAX_SIDE) -> tuple[int, int]:
    """The ``(H, W)`` at which a map for an image of ``shape`` is post-processed: the shape itself
    up to ``max_side``, beyond it scaled down to that longest side, keeping the aspect ratio.

    >>> working_shape((256, 256)), working_shape((3000, 2500))
    ((256, 256), (640, 533))
    """
    h, w = shape
    if max(h, w) <= max_side:
        return h, w
    f = max_side / max(h, w)
    return max(1, round(h * f)), max(1, round(w * f))


def to_input_size(mask: np.ndarray, boxes: list, shape: tuple[int, int]) -> tuple[np.ndarray, list]:
    """A mask and boxes found at :func:`working_shape`, in the pixels of an image of ``shape``.

    The mask is enlarged bilinearly and cut at one half (smooth edges, no blocks); each box is
    scaled outwards to whole pixels, so it still holds its component's enlarged pixels.

    >>> m = np.zeros((4, 4), bool); m[1:3, 1:3] = True
    >>> big, boxes = to_input_size(m, [(1, 1, 3, 3)], (8, 12))
    >>> int(big.sum()), boxes
    (20, [(3, 2, 9, 6)])
    """
    h, w = mask.shape
    if (h, w) == tuple(shape):
        return mask, boxes
    import cv2

    big = cv2.resize(mask.astype(np.uint8) * 255, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR) >= 128
    sx, sy = shape[1] / w, shape[0] / h
    scaled = [(int(np.floor(x0 * sx)), int(np.floor(y0 * sy)), min(shape[1], int(np.ceil(x1 * sx))),
               min(shape[0], int(np.ceil(y1 * sy)))) for x0, y0, x1, y1 in boxes]
    return big, scaled


def lesions_for_label(mask_prob: np.ndarray, label: str, p_tumour: float, pp: MaskPostprocess) -> tuple[np.ndarray, list, list]:
    """:func:`lesion_components`, except that an image labelled ``normal`` shows no lesion at all."""
    if label == "normal":
        return np.zeros(mask_prob.shape, bool), [], []
    return lesion_components(mask_prob, p_tumour, pp)
