"""Hard negatives for the lesion refiner: the lesions a whole-image model's first look draws where there are none.

At inference the refiner redraws the first look's top lesions, and some of them are not lesions: the growth
plate, a joint, the other bone. A refiner trained only on views of real lesions (and of normal images at random
places) redraws those as confidently as the real ones. This module runs a model's first look (its mask without the
second look) over the *training* split, takes its top lesions as the second look would find them, and keeps those
whose box holds no lesion pixel. Their boxes, in pixels of the refiner's image cache, go to a JSON file that a
refiner config names (``RefinerConfig.negatives``), and ``negative_views`` views a batch are framed around them.

Only training images are read: a negative from a validation image would teach the refiner the images it is
selected on.

File format::

    {"model": "osteolens-radiograph", "version": "1.6.0", "image_size": 320, "split": "train", "lesions": 3,
     "negatives": {"IMG000001": {"boxes": [[x0, y0, x1, y1], ...], "label": "benign"}, ...}}
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from osteolens.errors import OsteolensError


def component_negatives(prob: np.ndarray, p_tumour: float, truth: np.ndarray, seed, lesions: int,
                        size: int) -> tuple[int, list[list[float]]]:
    """How many of the top ``lesions`` first-look components of ``prob`` were checked, and those whose box holds no
    pixel of ``truth``, as boxes scaled from ``prob``'s pixels to a ``size`` x ``size`` cache (one decimal).

    >>> from osteolens.inference.postprocess import MaskPostprocess
    >>> prob = np.zeros((100, 100)); prob[10:20, 10:20] = 0.9; prob[60:80, 60:70] = 0.8
    >>> truth = np.zeros((100, 100), bool); truth[62:70, 62:68] = True
    >>> component_negatives(prob, 1.0, truth, MaskPostprocess(threshold=0.5), lesions=3, size=200)
    (2, [[20.0, 20.0, 40.0, 40.0]])
    """
    from osteolens.inference.postprocess import lesion_components

    _, boxes, _ = lesion_components(prob, p_tumour, seed)
    sx, sy = size / prob.shape[1], size / prob.shape[0]
    return min(lesions, len(boxes)), [[round(x0 * sx, 1), round(y0 * sy, 1), round(x1 * sx, 1), round(y1 * sy, 1)]
            for x0, y0, x1, y1 in boxes[:lesions] if not truth[y0:y1, x0:x1].any()]


def first_look_negatives(model: str | Path, out: str | Path, manifest: str | Path | None = None,
                         splits: str | Path | None = None, lesions: int = 3, image_size: int | None = None,
                         progress=None) -> dict:
    """Write the hard-negatives file of ``model``'s first look on its training split (see the module's docstring).

    Args:
        model: registered name or folder of a radiograph model.
        out: the JSON file to write.
        manifest, splits: the model's training data (default: the paths in its metadata; the split file must be
            the one it was trained with).
        lesions: how many top lesions of each image to check (as the second look's ``lesions``).
        image_size: the refiner's cache size the boxes are given in (default: the model's input size).
        progress: optional callable ``(done, total)``.

    Returns:
        The file's contents, less the boxes, with counts (``n_images``, ``n_components``, ``n_negatives``,
        ``n_images_with_negatives``).
    """
    from osteolens.data.manifest import load_manifest
    from osteolens.data.splits import cases_in_split, load_splits
    from osteolens.inference.analyze import analyze_image
    from osteolens.inference.postprocess import MaskPostprocess
    from osteolens.io.images import read_image, read_mask
    from osteolens.models.recalibrate import checked_training_files
    from osteolens.models.registry import load_model

    loaded = load_model(model)
    meta = loaded.metadata
    manifest_path, splits_path = checked_training_files(meta, manifest, splits)
    calib = meta["calibration"]
    look = calib.get("second_look")
    seed = MaskPostprocess(**look["seed"]) if look else MaskPostprocess.from_calibration(calib)
    first = replace(loaded, metadata={**meta, "calibration": {k: v for k, v in calib.items() if k != "second_look"}})
    size = int(image_size or loaded.image_size)
    table = load_manifest(manifest_path)
    cases = cases_in_split(table, load_splits(splits_path), "train")
    negatives, n_components = {}, 0
    for k, c in enumerate(cases):
        arr, props = read_image(table.resolve(c.image))
        res = analyze_image(first, arr, props, {"age": c.age, "sex": c.sex, "region": c.region, "view": c.view})
        h, w = res.mask_probability.shape
        x0, y0, x1, y1 = res.content_box or (0, 0, w, h)
        truth = read_mask(table.resolve(c.mask), expected_shape=(h, w)) if c.mask else np.zeros((h, w), bool)
        checked, boxes = component_negatives(res.mask_probability[y0:y1, x0:x1], res.p_benign + res.p_malignant,
                                             truth[y0:y1, x0:x1], seed, lesions, size)
        n_components += checked
        if boxes:
            negatives[c.case_id] = {"boxes": boxes, "label": res.label}
        if progress:
            progress(k + 1, len(cases))
    summary = {"model": meta["name"], "version": meta["version"], "image_size": size, "split": "train",
               "lesions": lesions, "seed": seed.to_dict(), "n_images": len(cases), "n_components": n_components,
               "n_negatives": sum(len(v["boxes"]) for v in negatives.values()),
               "n_images_with_negatives": len(negatives)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**summary, "negatives": negatives}, indent=1) + "\n")
    return summary


def load_negatives(path: str | Path, case_ids: np.ndarray, train_idx: np.ndarray,
                   image_size: int) -> list[tuple[int, tuple[float, ...]]]:
    """The hard negatives of a file written by :func:`first_look_negatives`, as ``(image index, box)`` pairs.

    Raises:
        OsteolensError: the file cannot be read, its boxes are for another cache size, or it names an image outside
            the training split.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
        entries = raw["negatives"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OsteolensError(f"{path}: cannot read the refiner's hard negatives ({exc}); write them with "
                             "osteolens refiner-negatives") from exc
    if int(raw.get("image_size", -1)) != image_size:
        raise OsteolensError(f"{path}: boxes for a {raw.get('image_size')}-px cache, the refiner's is {image_size} px")
    index = {str(c): int(i) for i, c in enumerate(case_ids)}
    train = {int(i) for i in train_idx}
    outside = sorted(c for c in entries if index.get(str(c)) not in train)
    if outside:
        raise OsteolensError(f"{path}: {len(outside)} negatives are not on training-split images (first: "
                             f"{outside[0]!r}); a validation image's first look must not teach the refiner")
    pairs = [(index[str(c)], tuple(float(v) for v in box)) for c, entry in entries.items() for box in entry["boxes"]]
    if not pairs:
        raise OsteolensError(f"{path}: no hard negatives in the file")
    return pairs
