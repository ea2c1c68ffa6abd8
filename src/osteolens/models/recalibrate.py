"""A model's calibration fitted again on its validation split, optionally with another preprocessing.

The exported network is kept as it is; what is redone is what training fitted on the validation
split after the weights were fixed (the same code,
:func:`osteolens.training.trainer.calibration_from_predictions`): the temperature, the malignant
threshold at the recorded target sensitivity, the uncertainty threshold that refers the recorded
share of cases, and the mask threshold. The mask post-processing, the mask input size and any
second look are kept from the source, without their validation scores, which were the source's
(re-choose them with ``benchmarks/radiograph_postprocess.py --write``).

Its use: changing how images are prepared for the network, such as cutting flat borders
(``crop_uniform_border``, :func:`osteolens.transforms.preprocess.uniform_border_box`), moves the
logits a little, so the thresholds are fitted again on validation images prepared the new way.
Both the source and the copy are scored on the same validation images, each prepared its own way
and each calibrated there, and the copy records both.

Example:
    >>> from osteolens.models.recalibrate import recalibrate_model
    >>> meta = recalibrate_model("osteolens-radiograph", "work/models/crop", crop_uniform_border=1.5 / 255,
    ...                          version="1.5.2")                                  # doctest: +SKIP
    >>> meta["recalibration"]["validation"]["figures"]["val_macro_auc"]            # doctest: +SKIP
    {'source': 0.909, 'copy': 0.9079, 'change': -0.0011}
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from osteolens import __version__
from osteolens.checksums import sha256_file
from osteolens.errors import OsteolensError
from osteolens.models.registry import LoadedModel, load_model
from osteolens.transforms.preprocess import normalise

#: validation figures recorded for the source and the copy
COMPARED = ("val_macro_auc", "val_auc_tumour", "val_auc_malignant", "val_dice", "ece_after")
#: calibration entries chosen by other means (post-processing search), carried over unchanged
KEPT = ("mask_input_size", "mask_postprocess", "second_look")
_SOURCE = object()  # "as the source model does"


def flip_batches(images_u8: np.ndarray, clinical: np.ndarray | None, batch_size: int):
    """``(n, images, clinical)`` per batch: ``n`` network inputs followed by their left-right flips, as inference runs them."""
    for start in range(0, len(images_u8), batch_size):
        x = normalise(images_u8[start:start + batch_size].astype(np.float32) / 255.0)
        c = None if clinical is None else np.concatenate([clinical[start:start + batch_size]] * 2).astype(np.float32)
        yield len(x), np.ascontiguousarray(np.concatenate([x, x[..., ::-1]])), c


def predict_onnx(model: LoadedModel, images_u8: np.ndarray, clinical: np.ndarray | None, batch_size: int = 16) -> dict:
    """Flip-TTA predictions of an ONNX model on cached images, as the trainer's ``predict_cached`` gives them.

    Returns ``class_logits``, ``subtype_logits``, ``mask_prob`` ``(N, S, S)`` and ``cam``, each the
    mean over the image and its left-right flip (flipped back).
    """
    outs: dict[str, list] = {"class_logits": [], "subtype_logits": [], "mask_prob": [], "cam": []}
    for n, images, c in flip_batches(images_u8, clinical, batch_size):
        o = model.run(images, c)
        mask = 1 / (1 + np.exp(-o["mask_logits"][:, 0]))
        outs["class_logits"].append((o["class_logits"][:n] + o["class_logits"][n:]) / 2)
        outs["subtype_logits"].append((o["subtype_logits"][:n] + o["subtype_logits"][n:]) / 2)
        outs["mask_prob"].append((mask[:n] + mask[n:, :, ::-1]) / 2)
        outs["cam"].append((o["cam"][:n] + o["cam"][n:, :, :, ::-1]) / 2)
    return {k: np.concatenate(v) for k, v in outs.items()}


def training_data(meta: dict, manifest: str | Path | None, splits: str | Path | None, crop_tolerance=_SOURCE):
    """A model's training config (paths overridden) and its data cached as the model prepares images.

    Args:
        meta: the model's metadata.
        manifest, splits: override the paths recorded in it; the split file must be the one the
            model was trained with, so that its validation split holds no training image.
        crop_tolerance: prepare the images with this flat-border crop instead of the model's own
            (``None``: no crop).

    Raises:
        OsteolensError: a file is missing, or the split file differs from the model's.
    """
    from osteolens.training.config import TrainConfig

    tr = meta["training"]
    if crop_tolerance is _SOURCE:
        crop_tolerance = meta["preprocessing"].get("crop_uniform_border")
    cfg = TrainConfig(**{**tr["config"], "manifest": manifest or tr["manifest"], "splits": splits or tr["splits"],
                         "crop_uniform_border": crop_tolerance})
    for label, path in (("manifest", cfg.manifest), ("splits", cfg.splits)):
        if not Path(path).is_file():
            raise OsteolensError(f"{path}: {label} of the model's training data not found; pass --{label}")
    if sha256_file(cfg.splits) != tr.get("splits_sha256"):
        raise OsteolensError(f"{cfg.splits}: not the split file {meta['name']} was trained with (sha256 differs); "
                             "calibrating on another validation split could use its training images")
    return cfg, cfg.cached()


def recalibrate_model(model: str | Path, out_dir: str | Path, crop_uniform_border=_SOURCE, version: str | None = None,
                      manifest: str | Path | None = None, splits: str | Path | None = None) -> dict:
    """Write a copy of ``model`` into ``out_dir``, its calibration fitted again on its validation split.

    Args:
        model: registered name or folder of an exported radiograph model.
        out_dir: the model folder to write (``model.onnx``, a byte copy of the source's, and ``metadata.json``);
            not the source's own folder.
        crop_uniform_border: the copy's flat-border crop tolerance (``None``: none); default: the source's.
        version: the copy's version (default: the source's).
        manifest, splits: the model's training data (default: the paths in its metadata).

    Returns:
        The copy's metadata.
    """
    from osteolens.training.trainer import calibration_from_predictions, split_indices

    source = load_model(model)
    out_dir = Path(out_dir)
    if out_dir.resolve() == Path(source.folder).resolve():
        raise OsteolensError(f"{out_dir}: the source model's own folder; write the recalibrated copy elsewhere")
    meta = json.loads(json.dumps(source.metadata))
    own_crop = meta["preprocessing"].get("crop_uniform_border")
    crop = own_crop if crop_uniform_border is _SOURCE else crop_uniform_border
    by_tolerance = {}  # one prediction per preparation: the same one twice when the crop does not change
    for tolerance in dict.fromkeys((own_crop, crop)):
        cfg, data = training_data(meta, manifest, splits, tolerance)
        _, val_idx = split_indices(cfg, data.case_ids)
        clinical = data.clinical[val_idx] if source.uses_clinical else None
        pred = predict_onnx(source, data.images[val_idx], clinical)
        by_tolerance[tolerance] = calibration_from_predictions(pred, data.labels[val_idx], data.masks[val_idx], cfg)
    before, after = by_tolerance[own_crop], by_tolerance[crop]
    figures = {k: {"source": round(before[k], 4), "copy": round(after[k], 4), "change": round(after[k] - before[k], 4)}
               for k in COMPARED}

    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(source.folder) / "model.onnx", out_dir / "model.onnx")
    source_info = {"name": meta["name"], "version": meta["version"], "sha256": meta["sha256"]}
    if crop is None:
        meta["preprocessing"].pop("crop_uniform_border", None)
    else:
        meta["preprocessing"]["crop_uniform_border"] = float(crop)
    meta.update({
        "version": version or meta["version"],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "calibration": {**after, **{k: meta["calibration"][k] for k in KEPT if k in meta["calibration"]}},
        "recalibration": {
            "source_model": source_info,
            "crop_uniform_border": {"source": own_crop, "copy": crop},
            "kept_from_source": [k for k in KEPT if k in meta["calibration"]],
            "validation": {"n_images": int(len(val_idx)), "figures": figures,
                           "note": "each model's images prepared its own way and calibrated on them; Dice at each one's "
                                   "best mask threshold, before post-processing, on the grid the network read"},
        },
        "software": {**meta.get("software", {}), "osteolens": __version__},
        "sha256": sha256_file(out_dir / "model.onnx"),
    })
    what = "flat borders cropped" if crop is not None else "no border crop"
    meta["changes"] = meta.get("changes", []) + [
        f"{meta['version']}: {source_info['name']} {source_info['version']}'s network, recalibrated on the validation "
        f"split with {what}" + (f" (tolerance {crop:.4f})" if crop is not None else "") + "; source -> copy: "
        + ", ".join(f"{k} {v['source']:.3f} -> {v['copy']:.3f}" for k, v in figures.items())]
    (out_dir / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta
