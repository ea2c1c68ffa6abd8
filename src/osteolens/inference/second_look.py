"""A second, zoomed-in look at the most likely lesion, to refine its mask.

Small lesions cover a few cells of the encoder's grid at whole-image scale. Models trained with
the lesion-zoom augmentation (``AugmentConfig.lesion_zoom``) have also seen lesions framed with
some context and enlarged; at inference the top lesion of the first look is framed the same way
(:func:`~osteolens.transforms.views.zoom_view`), the network is run on that view (with its
left-right flip), and its mask probabilities replace or are averaged with the first look's over
the view. The settings are chosen on the validation split and stored in the model's metadata as
``calibration.second_look``::

    {"context": 3.5, "combine": "mean", "max_zoom": 4.0, "seed": {...MaskPostprocess...}}

``seed`` is the post-processing that finds the lesion to look at. Models without the key get no
second look.
"""

from __future__ import annotations

import numpy as np

from osteolens.inference.postprocess import MaskPostprocess, flip_mean_probability, lesion_components
from osteolens.transforms.views import view_pixels, zoom_view
from osteolens.transforms.preprocess import preprocess, resize

MIN_ZOOM = 1.25  # a lesion already filling the image gains nothing from a second look
COMBINE = ("replace", "mean")


def lesion_view(prob: np.ndarray, p_tumour: float, seed: MaskPostprocess, context: float,
                max_zoom: float) -> tuple[int, int, int, int] | None:
    """Pixel box ``(x0, y0, x1, y1)`` of the view around the top lesion of ``prob``, or None.

    None when the first look finds no lesion, or when the view would be enlarged by less than
    ``MIN_ZOOM``.

    Example:
        >>> prob = np.zeros((100, 100)); prob[40:50, 60:70] = 0.9
        >>> lesion_view(prob, 1.0, MaskPostprocess(), context=5.0, max_zoom=4.0)
        (40, 20, 90, 70)
    """
    _, boxes, _ = lesion_components(prob, p_tumour, seed)
    if not boxes:
        return None
    zoom, centre = zoom_view(boxes[0], prob.shape, context, max_zoom)
    if zoom < MIN_ZOOM:
        return None
    return view_pixels(zoom, centre, prob.shape)


def view_probability(model, grey: np.ndarray, view: tuple[int, int, int, int], clinical: np.ndarray | None) -> np.ndarray:
    """The network's flip-averaged mask probability on ``view`` of ``grey``, at the view's size."""
    x0, y0, x1, y1 = view
    x = preprocess(grey[y0:y1, x0:x1], model.image_size)
    prob = flip_mean_probability(model.run(np.ascontiguousarray(np.stack([x, x[..., ::-1]])), clinical)["mask_logits"])
    return resize(prob.astype(np.float32), (y1 - y0, x1 - x0))


def combine(prob: np.ndarray, view: tuple[int, int, int, int], view_prob: np.ndarray, how: str) -> np.ndarray:
    """``prob`` with the second look's probabilities put over ``view`` (a new array)."""
    if how not in COMBINE:
        raise ValueError(f"second look: combine must be one of {COMBINE}, got {how!r}")
    x0, y0, x1, y1 = view
    out = prob.copy()
    out[y0:y1, x0:x1] = view_prob if how == "replace" else (prob[y0:y1, x0:x1] + view_prob) / 2
    return out


def second_look(model, grey: np.ndarray, prob: np.ndarray, p_tumour: float, clinical: np.ndarray | None,
                settings: dict) -> np.ndarray:
    """Refine a first-look probability map ``prob`` (at ``grey``'s size) with ``settings``."""
    view = lesion_view(prob, p_tumour, MaskPostprocess(**settings["seed"]), settings["context"], settings["max_zoom"])
    if view is None:
        return prob
    return combine(prob, view, view_probability(model, grey, view, clinical), settings["combine"])
