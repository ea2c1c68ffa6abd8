"""Fit a model's lesion malignancy reading (:mod:`osteolens.inference.lesion_malignancy`) on its validation split.

A model whose lesion refiner has the malignancy head (``osteolens train-refiner`` with
``malignancy_weight > 0``, then ``osteolens attach-refiner``) and whose second look reads that
refiner (``benchmarks/radiograph_postprocess.py --refiner --write``) is analysed on every
validation image as ``osteolens analyze`` would. The combination of the whole-image and the
lesion readings is fitted there (:func:`~osteolens.inference.lesion_malignancy.fit_combination`),
then the malignant threshold (at the model's target sensitivity) and the uncertainty threshold (at
its referral rate) are chosen again on the combined probabilities, as training chose them on the
whole image's. The copy records the combination, the thresholds it replaced and the validation
figures before and after; the networks are byte copies.

A copy recalibrated afterwards (``osteolens recalibrate``) drops the combination, whose inputs
changed; fit it again.

Example:
    >>> meta = calibrate_lesion_malignancy("work/models/v170", "work/models/v170_lm")    # doctest: +SKIP
    >>> meta["calibration"]["lesion_malignancy"]["validation"]["auc_malignant"]           # doctest: +SKIP
    {'whole_image': 0.93, 'combined': 0.95}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from osteolens.errors import OsteolensError

#: ``calibration`` fields chosen again on the combined probabilities
REFITTED = ("malignant_threshold", "uncertainty_threshold", "val_malignant_sensitivity", "val_malignant_specificity")


def validation_readings(model, manifest, cases, show_progress: bool = False) -> dict:
    """Whole-image probabilities ``(N, 3)``, lesion malignancy logits ``(N,)`` (NaN: no view) and labels of ``cases``."""
    from osteolens.data.manifest import LABELS
    from osteolens.inference.analyze import analyze_image
    from osteolens.io.images import read_image
    from osteolens.training.trainer import progress_bar

    probs, logits, labels = [], [], []
    with progress_bar(show_progress) as bar:
        task = bar.add_task("lesion malignancy", total=len(cases))
        for c in cases:
            arr, props = read_image(manifest.resolve(c.image))
            res = analyze_image(model, arr, props, {"age": c.age, "sex": c.sex, "region": c.region, "view": c.view})
            reading = res.lesion_malignancy
            probs.append(reading["whole_image"] if reading else [res.p_normal, res.p_benign, res.p_malignant])
            logits.append(reading["logit"] if reading else np.nan)
            labels.append(LABELS.index(c.label))
            bar.advance(task)
    return {"probs": np.array(probs, float), "logits": np.array(logits, float), "labels": np.array(labels, int)}


def reading_figures(probs: np.ndarray, labels: np.ndarray, malignant_threshold: float) -> dict:
    """AUCs, ECE and malignant sensitivity and specificity at a threshold, of one set of probabilities."""
    from osteolens.evaluation.calibration import expected_calibration_error
    from osteolens.evaluation.classification import macro_auc, roc_auc, sensitivity, specificity

    tumour = labels > 0
    share = probs[tumour, 2] / np.clip(probs[tumour, 1] + probs[tumour, 2], 1e-12, None)
    return {"auc_macro": float(macro_auc(labels, probs)), "auc_malignant": float(roc_auc(labels == 2, probs[:, 2])),
            "auc_malignant_among_tumours": float(roc_auc(labels[tumour] == 2, share)),
            "ece": float(expected_calibration_error(labels, probs)),
            "malignant_sensitivity": float(sensitivity(labels == 2, probs[:, 2] >= malignant_threshold)),
            "malignant_specificity": float(specificity(labels == 2, probs[:, 2] >= malignant_threshold))}


def calibrate_lesion_malignancy(model: str | Path, out_dir: str | Path, manifest: str | Path | None = None,
                                splits: str | Path | None = None, version: str | None = None,
                                show_progress: bool = False) -> dict:
    """Write a copy of ``model`` into ``out_dir`` with its lesion malignancy reading fitted on validation.

    Args:
        model: registered name or folder of a radiograph model whose refiner has the malignancy head.
        out_dir: the model folder to write; not the source's own.
        manifest, splits: the model's training data (default: the paths in its metadata).
        version: the copy's version (default: the source's).

    Returns:
        The copy's metadata.

    Raises:
        OsteolensError: a model without such a refiner or without a second look that reads it, a
            missing training file, or a split file other than the model's.
    """
    from osteolens.data.manifest import load_manifest
    from osteolens.data.splits import cases_in_split, load_splits
    from osteolens.inference.lesion_malignancy import combined_probabilities, fit_combination
    from osteolens.models.recalibrate import _source_and_copy, _write_copy, checked_training_files
    from osteolens.training import calibration as cal

    source, meta, out_dir = _source_and_copy(model, out_dir)
    calib = meta["calibration"]
    look = calib.get("second_look") or {}
    if not source.reads_lesion_malignancy:
        raise OsteolensError(f"{source.folder}: its lesion refiner has no malignancy head (train one with "
                             "malignancy_weight > 0 and attach it with osteolens attach-refiner)")
    if look.get("network") != "refiner":
        raise OsteolensError(f"{source.folder}: no second look reads its refiner; choose one first "
                             "(benchmarks/radiograph_postprocess.py --refiner --write)")
    training = meta["training"]
    manifest, splits = checked_training_files(meta, manifest, splits)
    man = load_manifest(manifest)
    cases = cases_in_split(man, load_splits(splits), "val")
    readings = validation_readings(source, man, cases, show_progress)
    probs, logits, labels = readings["probs"], readings["logits"], readings["labels"]
    settings = fit_combination(probs, logits, labels)
    combined = combined_probabilities(probs, logits, settings)
    config = training.get("config", {})
    target, referral = config.get("target_sensitivity", 0.92), config.get("referral_rate", 0.1)
    before = {k: calib[k] for k in ("malignant_threshold", "uncertainty_threshold") if k in calib}
    m_thr = cal.malignant_threshold(labels, combined[:, 2], target)
    u_thr = cal.uncertainty_threshold(cal.normalised_entropy(combined), referral)
    whole, both = reading_figures(probs, labels, before["malignant_threshold"]), reading_figures(combined, labels, m_thr)
    settings.update({
        "view": "the second look's view of the top lesion (calibration.second_look), read by the refiner",
        "fitted_on": {"split": "val", "n_images": int(len(labels)), "n_with_view": int(np.isfinite(logits).sum()),
                      "splits_sha256": training["splits_sha256"]},
        "replaced": before,
        "validation": {k: {"whole_image": round(whole[k], 4), "combined": round(both[k], 4)} for k in whole},
    })
    new = {**{k: v for k, v in calib.items() if k not in REFITTED}, "malignant_threshold": m_thr,
           "uncertainty_threshold": u_thr, "val_malignant_sensitivity": both["malignant_sensitivity"],
           "val_malignant_specificity": both["malignant_specificity"], "lesion_malignancy": settings}
    change = (f"the refiner's lesion malignancy reading combined with the whole image's (fitted on validation; "
              f"malignant AUC {whole['auc_malignant']:.3f} -> {both['auc_malignant']:.3f})")
    return _write_copy(source, meta, Path(out_dir), new, None, version, change)  # the record is in the calibration
