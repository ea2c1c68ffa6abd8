"""A model's calibration fitted again on its validation split, optionally with another preprocessing.

The exported network is kept as it is; what is redone is what training fitted on the validation
split after the weights were fixed (the same code,
:func:`osteolens.training.trainer.calibration_from_predictions`): the temperature, the malignant
threshold at the recorded target sensitivity, the uncertainty threshold that refers the recorded
share of cases, and the mask threshold. The mask post-processing, the mask input size and any
second look are kept from the source, without their validation scores, which were the source's
(re-choose them with ``benchmarks/radiograph_postprocess.py --write``).

Its use: changing how images are prepared for the network, such as cutting flat borders
(``crop_uniform_border``, and noisy ones with ``crop_noisy_border``, :func:`osteolens.transforms.preprocess.border_box`), moves the
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
from osteolens.models.registry import LoadedModel, copy_refiner, load_model
from osteolens.transforms.preprocess import crop_preprocessing, crop_settings, normalise

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


def training_data(meta: dict, manifest: str | Path | None, splits: str | Path | None, crop_tolerance=_SOURCE,
                  crop_noisy=_SOURCE):
    """A model's training config (paths overridden) and its data cached as the model prepares images.

    Args:
        meta: the model's metadata.
        manifest, splits: override the paths recorded in it; the split file must be the one the
            model was trained with, so that its validation split holds no training image.
        crop_tolerance: prepare the images with this flat-border crop instead of the model's own
            (``None``: no crop).
        crop_noisy: with a crop, cut noisy borders too (default: as the model does).

    Raises:
        OsteolensError: a file is missing, or the split file differs from the model's.
    """
    from osteolens.training.config import TrainConfig

    manifest, splits = checked_training_files(meta, manifest, splits)
    own_tolerance, own_noisy = crop_settings(meta["preprocessing"])
    crop_tolerance = own_tolerance if crop_tolerance is _SOURCE else crop_tolerance
    crop_noisy = own_noisy if crop_noisy is _SOURCE else crop_noisy
    cfg = TrainConfig(**{**meta["training"]["config"], "manifest": manifest, "splits": splits,
                         "crop_uniform_border": crop_tolerance, "crop_noisy_border": bool(crop_noisy and crop_tolerance is not None)})
    return cfg, cfg.cached()


def checked_training_files(meta: dict, manifest: str | Path | None = None,
                           splits: str | Path | None = None) -> tuple[Path, Path]:
    """A model's training manifest and split file (the paths in ``meta`` unless given), both present, and the
    split file the one the model was trained with (its sha256), so that its validation split holds no
    training image.

    Raises:
        OsteolensError: a file is missing, or the split file differs from the model's.
    """
    tr = meta["training"]
    paths = {"manifest": Path(manifest or tr["manifest"]), "splits": Path(splits or tr["splits"])}
    for label, path in paths.items():
        if not path.is_file():
            raise OsteolensError(f"{path}: {label} of the model's training data not found; pass --{label}")
    if sha256_file(paths["splits"]) != tr.get("splits_sha256"):
        raise OsteolensError(f"{paths['splits']}: not the split file {meta['name']} was trained with (sha256 differs); "
                             "calibrating on another validation split could use its training images")
    return paths["manifest"], paths["splits"]


def recalibrate_model(model: str | Path, out_dir: str | Path, crop_uniform_border=_SOURCE, version: str | None = None,
                      manifest: str | Path | None = None, splits: str | Path | None = None,
                      crop_noisy_border=_SOURCE) -> dict:
    """Write a copy of ``model`` into ``out_dir``, its calibration fitted again on its validation split.

    Args:
        model: registered name or folder of an exported radiograph model.
        out_dir: the model folder to write (``model.onnx``, a byte copy of the source's, and ``metadata.json``);
            not the source's own folder.
        crop_uniform_border: the copy's flat-border crop tolerance (``None``: none); default: the source's.
        crop_noisy_border: whether the copy cuts noisy borders too (needs a crop); default: the source's.
        version: the copy's version (default: the source's).
        manifest, splits: the model's training data (default: the paths in its metadata).

    Returns:
        The copy's metadata.
    """
    from osteolens.training.trainer import calibration_from_predictions, split_indices

    source, meta, out_dir = _source_and_copy(model, out_dir)
    own_crop, own_noisy = crop_settings(meta["preprocessing"])
    crop = own_crop if crop_uniform_border is _SOURCE else crop_uniform_border
    if crop_noisy_border is _SOURCE:  # the source's, unless the copy cuts no border at all
        noisy = own_noisy and crop is not None
    else:
        noisy = bool(crop_noisy_border)
    if noisy and crop is None:
        raise OsteolensError("cutting noisy borders needs the flat-border crop too (crop_uniform_border); give both")
    own, new = (own_crop, own_noisy), (crop, noisy)
    by_preparation = {}  # one prediction per preparation: the same one twice when it does not change
    for tolerance, cut_noisy in dict.fromkeys((own, new)):
        cfg, data = training_data(meta, manifest, splits, tolerance, cut_noisy)
        _, val_idx = split_indices(cfg, data.case_ids)
        clinical = data.clinical[val_idx] if source.uses_clinical else None
        pred = predict_onnx(source, data.images[val_idx], clinical)
        by_preparation[(tolerance, cut_noisy)] = calibration_from_predictions(pred, data.labels[val_idx],
                                                                              data.masks[val_idx], cfg)
    before, after = by_preparation[own], by_preparation[new]
    figures = {k: {"source": round(before[k], 4), "copy": round(after[k], 4), "change": round(after[k] - before[k], 4)}
               for k in COMPARED}

    for key in ("crop_uniform_border", "crop_noisy_border"):
        meta["preprocessing"].pop(key, None)
    meta["preprocessing"].update(crop_preprocessing(crop, noisy))
    what = ("flat and noisy borders cropped" if noisy else "flat borders cropped") if crop is not None else "no border crop"
    record = {
        "crop_uniform_border": {"source": own_crop, "copy": crop},
        **({"crop_noisy_border": {"source": own_noisy, "copy": noisy}} if noisy or own_noisy else {}),
        "validation": {"n_images": int(len(val_idx)), "figures": figures,
                       "note": "each model's images prepared its own way and calibrated on them; Dice at each one's "
                               "best mask threshold, before post-processing, on the grid the network read"},
    }
    change = (f"recalibrated on the validation split with {what}" + (f" (tolerance {crop:.4f})" if crop is not None else "")
              + "; source -> copy: " + ", ".join(f"{k} {v['source']:.3f} -> {v['copy']:.3f}" for k, v in figures.items()))
    return _write_copy(source, meta, out_dir, after, record, version, change)


def _write_copy(source: LoadedModel, meta: dict, out_dir: Path, calibration: dict, record: dict | None,
                version: str | None, change: str) -> dict:
    """Write the copy: the source's ONNX files and ``meta`` with the new calibration, the ``recalibration`` record
    (None: the source's is kept) and a changes line."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(source.folder) / "model.onnx", out_dir / "model.onnx")
    copy_refiner(source.folder, meta, out_dir)
    source_info = {"name": meta["name"], "version": meta["version"], "sha256": meta["sha256"]}
    kept = [k for k in KEPT if k in meta["calibration"]]
    meta.update({
        "version": version or meta["version"],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "calibration": {**calibration, **{k: meta["calibration"][k] for k in kept}},
        "software": {**meta.get("software", {}), "osteolens": __version__},
        "sha256": sha256_file(out_dir / "model.onnx"),
    })
    if record is not None:
        meta["recalibration"] = {"source_model": source_info, **record, "kept_from_source": kept}
    meta["changes"] = meta.get("changes", []) + [
        f"{meta['version']}: {source_info['name']} {source_info['version']}'s network, {change}"]
    (out_dir / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _source_and_copy(model: str | Path, out_dir: str | Path) -> tuple[LoadedModel, dict, Path]:
    source = load_model(model)
    out_dir = Path(out_dir)
    if out_dir.resolve() == Path(source.folder).resolve():
        raise OsteolensError(f"{out_dir}: the source model's own folder; write the recalibrated copy elsewhere")
    return source, json.loads(json.dumps(source.metadata)), out_dir


#: the fewest malignant and non-malignant images a local calibration accepts: the malignant threshold is a
#: quantile of the malignant images' probabilities, which a handful of them cannot place
MIN_LOCAL_PER_SIDE = 20
#: figures of a calibration applied to a set of images (:func:`applied_figures`)
APPLIED = ("ece", "malignant_sensitivity", "malignant_specificity", "accuracy", "referred", "dice")


def applied_figures(pred: dict, labels: np.ndarray, masks: np.ndarray | None, calibration: dict) -> dict:
    """How a calibration does on images: ECE, malignant sensitivity and specificity at its threshold, accuracy of
    the decided label (malignant from the threshold, else the likelier of normal and benign), the share referred as
    uncertain, and mean Dice on tumour images at its mask threshold (before post-processing; ``None`` without masks).
    """
    from osteolens.evaluation.calibration import expected_calibration_error
    from osteolens.training import calibration as cal

    probs = cal.softmax(pred["class_logits"], calibration["temperature"])
    malignant = probs[:, 2] >= calibration["malignant_threshold"]
    decided = np.where(malignant, 2, probs[:, :2].argmax(1))
    tumour = labels > 0
    dice = None if masks is None or not tumour.any() else cal.mean_dice(
        pred["mask_prob"][tumour], masks[tumour], calibration["mask_threshold"])
    return {
        "ece": float(expected_calibration_error(labels, probs)),
        "malignant_sensitivity": float(malignant[labels == 2].mean()),
        "malignant_specificity": float((~malignant[labels != 2]).mean()),
        "accuracy": float((decided == labels).mean()),
        "referred": float((cal.normalised_entropy(probs) > calibration["uncertainty_threshold"]).mean()),
        "dice": dice,
    }


def threshold_stability(pred: dict, labels: np.ndarray, groups: np.ndarray, calibration: dict, n_boot: int = 1000,
                        seed: int = 0) -> dict:
    """How well a set of images pins down a fitted malignant threshold: 95% intervals over patient-group resamples.

    Returns ``threshold`` (the threshold fitted again on each resample, at the same temperature and target) and
    ``sensitivity`` / ``specificity`` (of the fitted threshold itself), each ``{"value", "ci_low", "ci_high", "n"}``.
    A set with few malignant images gives a wide threshold interval: its sensitivity on new images will vary that much.
    """
    from osteolens.evaluation.bootstrap import bootstrap_metric, group_bootstrap_weights, percentile_ci
    from osteolens.evaluation.classification import sensitivity, specificity
    from osteolens.training import calibration as cal

    p = cal.softmax(pred["class_logits"], calibration["temperature"])[:, 2]
    target = calibration["malignant_target_sensitivity"]
    W = group_bootstrap_weights(groups, n_boot, seed)  # one set of resamples for the refits and the two CIs
    refits = []
    for w in W:
        idx = np.repeat(np.arange(len(p)), w.astype(int))  # each case as many times as its group was drawn
        if (labels[idx] == 2).any():
            refits.append(cal.malignant_threshold(labels[idx], p[idx], target))
    low, high = percentile_ci(np.array(refits))
    flagged = p >= calibration["malignant_threshold"]
    return {
        "threshold": {"value": calibration["malignant_threshold"], "ci_low": low, "ci_high": high, "n": int(len(p))},
        "sensitivity": bootstrap_metric(sensitivity, (labels == 2, flagged), weights=W).to_dict(),
        "specificity": bootstrap_metric(specificity, (labels == 2, flagged), weights=W).to_dict(),
    }


def training_overlap(meta: dict, manifest, case_ids: list[str]) -> list[str]:
    """The cases among ``case_ids`` whose image the model was trained on (:mod:`osteolens.data.fingerprints`).

    Raises:
        OsteolensError: the model records no fingerprints of its training images.
    """
    from osteolens.data.fingerprints import METHOD, training_matches

    record = meta.get("training", {}).get("image_fingerprints")
    if not record or record.get("method") != METHOD:
        raise OsteolensError(f"model {meta['name']} {meta['version']} records no fingerprints of its training images "
                             "(exported by an older osteolens), so a local set cannot be checked against them; "
                             "re-export it, or skip the check only if the local images cannot include its training images")
    return training_matches(record, manifest, case_ids)


def add_training_fingerprints(model_dir: str | Path, version: str, manifest: str | Path | None = None,
                              splits: str | Path | None = None) -> dict:
    """Record in a model folder exported before fingerprints were recorded those of its training images.

    The network and calibration are untouched; ``metadata.json`` gains
    ``training.image_fingerprints``, the new ``version`` and a changes line (its checksum changes, so a shipped
    model is registered again). Needs the model's training data (``manifest``, ``splits``: as in
    :func:`training_data`).
    """
    from osteolens.data.fingerprints import training_fingerprints
    from osteolens.training.trainer import split_indices

    path = Path(model_dir) / "metadata.json"
    meta = json.loads(path.read_text())
    cfg, data = training_data(meta, manifest, splits, crop_tolerance=None)
    train_idx, _ = split_indices(cfg, data.case_ids)
    meta["training"]["image_fingerprints"] = training_fingerprints(cfg.manifest, data.case_ids[train_idx])
    meta["changes"] = meta.get("changes", []) + [
        f"{version}: {meta['version']} as it was, with the fingerprints of its {len(train_idx)} training images recorded "
        "(for the overlap check of a local recalibration)"]
    meta["version"] = version
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def recalibrate_on_local_data(model: str | Path, out_dir: str | Path, manifest: str | Path, splits: str | Path | None = None,
                              split: str = "val", version: str | None = None, target_sensitivity: float | None = None,
                              check_overlap: bool = True) -> dict:
    """Write a copy of ``model`` into ``out_dir``, its calibration fitted on a site's own labelled images.

    A model's probabilities and thresholds hold for images like its validation split's; another site's
    scanners, patients and case mix move them (the centre-held-out figures in the model card). This fits
    the temperature, the malignant threshold (at the source's target sensitivity, or ``target_sensitivity``),
    the uncertainty threshold (referring the source's share of cases) and, when every tumour image has a mask,
    the mask threshold, on the local images, prepared as the source prepares them. The network, the
    preprocessing and the mask post-processing are the source's.

    Args:
        model: registered name or folder of an exported radiograph model.
        out_dir: the model folder to write; not the source's own folder.
        manifest: the local images (``osteolens data import-folder``), every one labelled normal, benign or malignant.
        splits, split: fit on the cases of ``split`` in this split file only (default: every case of the manifest).
            Keep other local cases apart to score the copy on (``osteolens analyze`` + ``osteolens evaluate``).
        version: the copy's version (default: the source's).
        target_sensitivity: the malignant sensitivity the threshold is set for (default: the source's).
        check_overlap: refuse local images the source was trained on (by
            :mod:`~osteolens.data.fingerprints`; their overconfident probabilities would skew the fit).

    Returns:
        The copy's metadata. ``recalibration.local.figures`` holds the source's and the copy's
        :func:`applied_figures` on the local images; the copy's are measured on the images it was
        fitted on, so they are optimistic.

    Raises:
        OsteolensError: unlabelled cases, too few malignant or non-malignant images, images the model was trained on.
    """
    from osteolens.data.manifest import load_manifest
    from osteolens.data.splits import cases_in_split, load_splits
    from osteolens.training.cache import load_cached
    from osteolens.training.config import TrainConfig
    from osteolens.training.trainer import calibration_from_predictions

    source, meta, out_dir = _source_and_copy(model, out_dir)
    manifest = Path(manifest)
    local = load_manifest(manifest)
    cases = cases_in_split(local, load_splits(splits), split) if splits else local.cases
    unlabelled = [c.case_id for c in cases if c.label not in ("normal", "benign", "malignant")]
    if unlabelled:
        raise OsteolensError(f"{manifest}: {len(unlabelled)} case(s) without a normal/benign/malignant label, e.g. "
                             f"{', '.join(unlabelled[:5])}; every image a calibration is fitted on needs its label")
    n_malignant = sum(c.label == "malignant" for c in cases)
    if min(n_malignant, len(cases) - n_malignant) < MIN_LOCAL_PER_SIDE:
        raise OsteolensError(f"{manifest}: {n_malignant} malignant and {len(cases) - n_malignant} other images; a local "
                             f"calibration needs at least {MIN_LOCAL_PER_SIDE} of each to place the malignant threshold")
    ids = [c.case_id for c in cases]
    if check_overlap:
        overlap = training_overlap(meta, local, ids)
        if overlap:
            raise OsteolensError(f"{manifest}: {len(overlap)} image(s) are ones {meta['name']} was trained on, e.g. "
                                 f"{', '.join(overlap[:5])}; leave them out of a local calibration")
    crop, noisy = crop_settings(meta["preprocessing"])
    data = load_cached(manifest, source.image_size, manifest.parent / ".osteolens_cache", crop_tolerance=crop,
                       crop_noisy=noisy)
    idx = np.flatnonzero(np.isin(data.case_ids, ids))
    labels = data.labels[idx]
    tumour_masked = [bool(c.mask) for c in cases if c.label != "normal"]
    masks = data.masks[idx] if tumour_masked and all(tumour_masked) else None
    pred = predict_onnx(source, data.images[idx], data.clinical[idx] if source.uses_clinical else None)
    tr_cfg = meta["training"]["config"]
    cfg = TrainConfig(**{**tr_cfg, "target_sensitivity": target_sensitivity or tr_cfg["target_sensitivity"]})
    fitted = calibration_from_predictions(pred, labels, masks, cfg,
                                          mask_threshold=None if masks is not None else meta["calibration"]["mask_threshold"])
    before = applied_figures(pred, labels, masks, meta["calibration"])
    after = applied_figures(pred, labels, masks, fitted)
    figures = {k: {"source": before[k], "copy": after[k]} for k in APPLIED if before[k] is not None}
    record = {"local": {
        "manifest": str(manifest.resolve()), "manifest_sha256": sha256_file(manifest),
        "splits": None if splits is None else str(Path(splits).resolve()), "split": split if splits else None,
        "n_images": len(idx), "n_groups": len({c.group_id for c in cases}),
        "labels": {k: int((labels == i).sum()) for i, k in enumerate(("normal", "benign", "malignant"))},
        "mask_threshold": "fitted on the local tumour masks" if masks is not None else "kept from the source (local masks incomplete)",
        "training_overlap_checked": check_overlap,
        "figures": figures,
        "malignant_threshold_stability": threshold_stability(pred, labels, np.array([c.group_id for c in cases]), fitted),
        "note": "the source as shipped and the copy, each with its own calibration, on the local images the copy was "
                "fitted on: the copy's figures are optimistic; score it on other local images",
    }}
    change = (f"calibration fitted on {len(idx)} local images ({manifest.name}"
              + (f", split {split}" if splits else "") + "); on them, source -> copy: "
              + ", ".join(f"{k} {v['source']:.3f} -> {v['copy']:.3f}" for k, v in figures.items()))
    return _write_copy(source, meta, out_dir, fitted, record, version, change)
