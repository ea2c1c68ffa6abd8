"""A second, zoomed-in look at the most likely lesions, to refine their mask.

Small lesions cover a few cells of the encoder's grid at whole-image scale. At inference the top
lesions of the first look are each framed with some context (:func:`~osteolens.transforms.views.zoom_view`),
a network reads each view (with its left-right flip), and its mask probabilities replace or are
averaged with the first look's over the views. Views are cut from the image resized as the network
that reads them was trained (:func:`view_source`): the whole-image network's ``image_size`` square
(:func:`~osteolens.transforms.preprocess.network_grey`), or the finer square a refiner's training
cache had (``refiner.image_size``, e.g. 640 px), as training cuts them from its cached images, so
that a 3,000-px film and its 1,000-px copy give the refiner the same view. The network is either

- ``"main"``: the whole-image network itself, for models trained with the lesion-zoom
  augmentation (``AugmentConfig.lesion_zoom``); or
- ``"refiner"``: a dedicated lesion refiner shipped beside it (``refiner.onnx``,
  :mod:`osteolens.models.refiner`), trained on views of lesions only, so that learning to
  delineate them cannot cost the whole-image network any of its classification.

The settings are chosen on the validation split and stored in the model's metadata as
``calibration.second_look``::

    {"context": 3.0, "combine": "replace", "max_zoom": 4.0, "seed": {...MaskPostprocess...},
     "network": "refiner", "lesions": 3}

``seed`` is the post-processing that finds the lesions to look at; ``lesions`` how many of them,
most likely first (default 1); ``network`` defaults to ``"main"``. Where views overlap their
probabilities are averaged. Models without the key get no second look.
"""

from __future__ import annotations

import numpy as np

from osteolens.inference.postprocess import MaskPostprocess, flip_mean_probability, lesion_components
from osteolens.transforms.views import view_pixels, zoom_view
from osteolens.transforms.preprocess import network_grey, preprocess, resize

MIN_ZOOM = 1.25  # a lesion already filling much of the image gains nothing from a second look
COMBINE = ("replace", "mean")
NETWORKS = ("main", "refiner")


def lesion_views(prob: np.ndarray, p_tumour: float, seed: MaskPostprocess, context: float, max_zoom: float,
                 lesions: int = 1) -> list[tuple[int, int, int, int]]:
    """Pixel boxes ``(x0, y0, x1, y1)`` of the views around the top ``lesions`` lesions of ``prob``.

    A lesion whose view would be enlarged by less than ``MIN_ZOOM`` gets none; no lesion, no view.

    Example:
        >>> prob = np.zeros((100, 100)); prob[40:50, 60:70] = 0.9; prob[5:9, 5:9] = 0.8
        >>> lesion_views(prob, 1.0, MaskPostprocess(), context=5.0, max_zoom=4.0, lesions=2)
        [(40, 20, 90, 70), (0, 0, 25, 25)]
    """
    _, boxes, _ = lesion_components(prob, p_tumour, seed)
    views = []
    for box in boxes[:lesions]:
        zoom, centre = zoom_view(box, prob.shape, context, max_zoom)
        if zoom >= MIN_ZOOM:
            views.append(view_pixels(zoom, centre, prob.shape))
    return views


def lesion_view(prob: np.ndarray, p_tumour: float, seed: MaskPostprocess, context: float,
                max_zoom: float) -> tuple[int, int, int, int] | None:
    """The view around the top lesion (:func:`lesion_views` of one lesion), or None."""
    views = lesion_views(prob, p_tumour, seed, context, max_zoom, 1)
    return views[0] if views else None


def view_source(model, grey: np.ndarray, network: str = "main", seen: np.ndarray | None = None) -> np.ndarray:
    """The square grey a second look by ``network`` cuts its views from: ``grey`` (the part of the image the
    whole-image network reads) resized as that network's training images were. ``seen``, the whole-image
    network's own input grey, is returned as is where the sizes agree."""
    size = model.refiner_image_size if network == "refiner" else model.image_size
    if seen is not None and seen.shape == (size, size):
        return seen
    return network_grey(grey, size)


def views_probability(model, seen: np.ndarray, views: list, shape: tuple[int, int], clinical: np.ndarray | None,
                      network: str = "main") -> list[np.ndarray]:
    """The flip-averaged mask probability of each view, each at its view's size (:func:`views_outputs`' first)."""
    return views_outputs(model, seen, views, shape, clinical, network)[0]


def views_outputs(model, seen: np.ndarray, views: list, shape: tuple[int, int], clinical: np.ndarray | None,
                  network: str = "main") -> tuple[list[np.ndarray], np.ndarray | None]:
    """The flip-averaged mask probability of each view, each at its view's size, and the flip-averaged
    malignancy logit of each view (None unless the network is a refiner with the malignancy head).

    Args:
        model: the loaded model.
        seen: the image the views are cut from (:func:`view_source`).
        views: pixel boxes in an image of ``shape`` (the probability map's).
        shape: ``(H, W)`` of the map the views are boxes of.
        clinical: the ``(2, C)`` pair of the image, needed by a main network that uses clinical
            inputs; the refiner reads the image alone.
        network: ``"main"`` or ``"refiner"``.

    All views and their flips go through the network in one batch.
    """
    if network not in NETWORKS:
        raise ValueError(f"second look: network must be one of {NETWORKS}, got {network!r}")
    if not views:
        return [], None
    size = model.refiner_size if network == "refiner" else model.image_size
    sy, sx = seen.shape[0] / shape[0], seen.shape[1] / shape[1]
    crops = []
    for x0, y0, x1, y1 in views:
        r0, c0 = int(round(y0 * sy)), int(round(x0 * sx))
        crops.append(preprocess(seen[r0:max(r0 + 1, int(round(y1 * sy))), c0:max(c0 + 1, int(round(x1 * sx)))], size))
    batch = np.ascontiguousarray(np.stack([v for x in crops for v in (x, x[..., ::-1])]))
    if network == "refiner":
        out = model.run_refiner(batch)
    else:
        clin = None if clinical is None else np.repeat(clinical[:1], len(batch), axis=0)
        out = model.run(batch, clin)
    logits = out["mask_logits"]
    malignancy = out["malignancy_logit"].reshape(-1, 2).mean(axis=1) if "malignancy_logit" in out else None
    return [resize(flip_mean_probability(logits[2 * i:2 * i + 2]).astype(np.float32), (y1 - y0, x1 - x0))
            for i, (x0, y0, x1, y1) in enumerate(views)], malignancy


def view_probability(model, seen: np.ndarray, view: tuple[int, int, int, int], shape: tuple[int, int],
                     clinical: np.ndarray | None, network: str = "main") -> np.ndarray:
    """:func:`views_probability` of one view."""
    return views_probability(model, seen, [view], shape, clinical, network)[0]


def combine(prob: np.ndarray, views, view_probs, how: str) -> np.ndarray:
    """``prob`` with the second look's probabilities put over its views (a new array).

    ``views`` and ``view_probs`` are lists (or one view and its probabilities); overlapping views
    are averaged. ``how``: ``"replace"`` the first look there, or take the ``"mean"`` of the two.

    Example:
        >>> out = combine(np.zeros((4, 4)), [(0, 0, 2, 2), (1, 1, 3, 3)], [np.ones((2, 2)), np.zeros((2, 2))], "replace")
        >>> out[:3, :3].tolist()
        [[1.0, 1.0, 0.0], [1.0, 0.5, 0.0], [0.0, 0.0, 0.0]]
    """
    if how not in COMBINE:
        raise ValueError(f"second look: combine must be one of {COMBINE}, got {how!r}")
    if isinstance(views, tuple):
        views, view_probs = [views], [view_probs]
    total, count = np.zeros(prob.shape, np.float64), np.zeros(prob.shape, np.int32)
    for (x0, y0, x1, y1), vp in zip(views, view_probs):
        total[y0:y1, x0:x1] += vp
        count[y0:y1, x0:x1] += 1
    inside = count > 0
    refined = total[inside] / count[inside]
    out = prob.copy()
    out[inside] = refined if how == "replace" else (prob[inside] + refined) / 2
    return out


def look_at_lesions(model, grey: np.ndarray, seen: np.ndarray, prob: np.ndarray, p_tumour: float,
                    clinical: np.ndarray | None, settings: dict) -> tuple[list, list, np.ndarray | None]:
    """The views ``settings`` frames around the top lesions of ``prob``, their mask probabilities and their
    malignancy logits (None unless read by a refiner with the malignancy head), most likely lesion first; the
    analysis puts the probabilities over the first look with :func:`combine`. ``grey`` is the part of the image
    the whole-image network read, ``seen`` that network's input grey (:func:`view_source`)."""
    views = lesion_views(prob, p_tumour, MaskPostprocess(**settings["seed"]), settings["context"], settings["max_zoom"],
                         int(settings.get("lesions", 1)))
    network = settings.get("network", "main")
    source = view_source(model, grey, network, seen) if views else seen
    probs, malignancy = views_outputs(model, source, views, prob.shape, clinical, network)
    return views, probs, malignancy
