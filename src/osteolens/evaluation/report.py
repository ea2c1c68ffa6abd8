"""``osteolens evaluate``: predictions + manifest -> metrics.json, summary.md and plots.

The predictions CSV has one row per image with a key (``case_id``, or ``image`` whose file
stem is the case id) and any of:

- ``p_normal``, ``p_benign``, ``p_malignant`` and optionally ``label`` (the model's decision;
  ``indeterminate`` counts as a referral) -> classification and calibration;
- ``subtype`` -> subtype accuracy, balanced accuracy and confusion matrix on tumour cases, and
  each subtype's recall in the subtype strata;
- ``mask`` (path of the predicted mask, relative to the CSV) -> segmentation;
- ``boxes`` (``x0 y0 x1 y1 [score]``, ``;``-separated) or a ``mask`` -> detection.
  A box without a score takes its entry in ``box_scores`` (``;``-separated, one per box, as
  ``osteolens analyze`` writes them), else the image's tumour probability (1 - ``p_normal``).

Rows with ``status`` = ``error`` are left out and counted. Every metric is reported as
``{"value", "ci_low", "ci_high", "n"}`` with a 95% interval from a bootstrap over patient
groups; all metrics share the same resamples.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from osteolens import RESEARCH_NOTICE, __version__
from osteolens.data.manifest import LABELS, Manifest, load_manifest
from osteolens.errors import EvaluationError, ImageReadError
from osteolens.evaluation import calibration as cal
from osteolens.evaluation import classification as cls
from osteolens.evaluation import detection as det
from osteolens.evaluation import segmentation as seg
from osteolens.evaluation.bootstrap import MetricResult, bootstrap_metric, group_bootstrap_weights
from osteolens.io.images import read_mask
from osteolens.io.tables import decimal_number, read_text_table

PROB_COLUMNS = tuple(f"p_{k}" for k in LABELS)
AGE_BANDS = ((0, 20, "<20"), (20, 40, "20-39"), (40, 60, "40-59"), (60, 200, ">=60"))
SIZE_BANDS = ((0.0, 0.02, "small (<2% of image)"), (0.02, 0.08, "medium (2-8%)"), (0.08, 1.01, "large (>=8%)"))


@dataclass
class EvaluationInputs:
    """Predictions joined to truth, one row per evaluated case."""

    table: pd.DataFrame
    manifest: Manifest
    predictions_path: Path
    n_failed: int
    n_missing: int
    n_unmatched: int = 0  # prediction rows without a truth case (another data set, or outside the split)


def load_inputs(predictions: str | Path, truth: str | Path, splits: str | Path | None = None, split: str | None = None) -> EvaluationInputs:
    """Read predictions and truth and join them on the case id.

    Raises:
        EvaluationError: missing file or column, probabilities that do not sum to 1, or no
            prediction matching any truth case.
    """
    predictions = Path(predictions)
    pred = read_text_table(predictions, "predictions", EvaluationError)
    manifest = load_manifest(truth)
    if "case_id" in pred.columns:
        key = pred["case_id"].str.strip()
    elif "image" in pred.columns:
        key = pred["image"].map(lambda s: Path(s.strip()).stem)
    else:
        raise EvaluationError(f"{predictions}: needs a 'case_id' or 'image' column; found {', '.join(pred.columns)}")
    pred = pred.assign(case_id=key)
    n_failed = 0
    if "status" in pred.columns:
        failed = pred["status"].str.strip().str.lower() == "error"
        n_failed = int(failed.sum())
        pred = pred[~failed]
    if pred["case_id"].duplicated().any():
        dup = pred.loc[pred["case_id"].duplicated(), "case_id"].iloc[0]
        raise EvaluationError(f"{predictions}: case {dup!r} has more than one prediction row")
    truth_frame = manifest.to_frame()
    if splits is not None:
        from osteolens.data.splits import load_splits

        table = load_splits(splits)
        column = "split" if "split" in table.columns else "fold"
        if split is None:
            raise EvaluationError("--split is needed with --splits (e.g. test)")
        keep = set(table.loc[table[column].astype(str) == str(split), "case_id"])
        if not keep:
            raise EvaluationError(f"{splits}: no case in {column} {split!r}")
        truth_frame = truth_frame[truth_frame["case_id"].isin(keep)]
    # prediction columns named like truth columns (label, subtype, mask) get the suffix _pred
    joined = truth_frame.merge(pred, on="case_id", how="inner", suffixes=("", "_pred"))
    if joined.empty:
        raise EvaluationError(f"{predictions}: no prediction matches a case of {truth} (keys: case_id or image stem)")
    n_missing = len(truth_frame) - len(joined)
    present = [c for c in PROB_COLUMNS if c in pred.columns]
    if present and len(present) != len(PROB_COLUMNS):
        raise EvaluationError(f"{predictions}: has {present} but needs all of {list(PROB_COLUMNS)}")
    if present:
        probs = joined[list(PROB_COLUMNS)].map(_number_or_nan)
        if probs.isna().any().any():
            bad = joined.loc[probs.isna().any(axis=1), "case_id"].iloc[0]
            raise EvaluationError(f"{predictions}: case {bad!r} has a missing or non-numeric probability")
        sums = probs.sum(axis=1)
        if (abs(sums - 1) > 1e-3).any():
            bad = joined.loc[abs(sums - 1) > 1e-3, "case_id"].iloc[0]
            raise EvaluationError(f"{predictions}: probabilities of case {bad!r} sum to {sums[abs(sums - 1) > 1e-3].iloc[0]:.4f}, not 1")
        joined[list(PROB_COLUMNS)] = probs
    return EvaluationInputs(joined.reset_index(drop=True), manifest, predictions, n_failed, n_missing,
                            n_unmatched=len(pred) - len(joined))


def _decisions(t: pd.DataFrame, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The model's decided class per case (its ``label`` column; argmax where it is missing or
    ``indeterminate``) and the indeterminate flags."""
    decision = t["label_pred"].str.strip().str.lower() if "label_pred" in t.columns else pd.Series([""] * len(t))
    index = decision.map({k: i for i, k in enumerate(LABELS)})
    pred = np.where(index.notna(), index.fillna(0), probs.argmax(axis=1)).astype(int)
    return pred, (decision == "indeterminate").to_numpy()


def _classification(t: pd.DataFrame, W: np.ndarray, boot: dict, target_sensitivity: float) -> tuple[dict, dict]:
    labelled = t["label"].isin(LABELS).to_numpy()
    y = t["label"].map({k: i for i, k in enumerate(LABELS)}).fillna(-1).to_numpy(int)
    probs = t[list(PROB_COLUMNS)].to_numpy(float)
    pred, indeterminate = _decisions(t, probs)
    sel = labelled
    r: dict = {}
    curves: dict = {"roc": {}}

    def m(metric, *args, subset=sel):
        return bootstrap_metric(metric, args, weights=W, subset=subset, **boot)

    r["macro_auc"] = m(cls.macro_auc, y, probs)
    r["auc"] = {}
    binaries = {k: (y == i, probs[:, i], pred == i) for i, k in enumerate(LABELS)}
    binaries["tumour_vs_normal"] = (y > 0, probs[:, 1] + probs[:, 2], pred > 0)
    for name, (truth, score, decided) in binaries.items():
        r["auc"][name] = m(cls.roc_auc, truth, score)
        curves["roc"][name] = [a.tolist() for a in cls.roc_curve_points(truth[sel], score[sel])[:2]]
    r["accuracy"] = m(cls.multiclass_accuracy, y, pred)
    r["balanced_accuracy"] = m(lambda a, b, weights=None: cls.multiclass_balanced_accuracy(a, b, weights, 3), y, pred)
    r["macro_f1"] = m(lambda a, b, weights=None: cls.macro_f1(a, b, weights, 3), y, pred)
    r["indeterminate_rate"] = m(lambda d, weights=None: seg.weighted_mean(d.astype(float), weights), indeterminate)
    cm = cls.confusion_matrix(y[sel], pred[sel], 3)
    r["confusion_matrix"] = {"labels": list(LABELS), "rows": "truth", "columns": "prediction", "matrix": cm.astype(int).tolist()}
    r["operating_point"] = {
        name: {k: m(f, truth, decided) for k, f in cls.BINARY_METRICS.items()}
        for name, (truth, score, decided) in binaries.items()
    }
    r["at_sensitivity"] = {"target": target_sensitivity}
    for name in ("malignant", "tumour_vs_normal"):
        truth, score, _ = binaries[name]
        thr = cls.threshold_for_sensitivity(truth[sel], score[sel], target_sensitivity)
        if np.isnan(thr):  # no positive case: no threshold reaches a sensitivity
            r["at_sensitivity"][name] = {"threshold": None, "note": "no positive case", **{k: None for k in cls.BINARY_METRICS}}
            continue
        r["at_sensitivity"][name] = {"threshold": round(thr, 6), **{k: m(f, truth, score >= thr) for k, f in cls.BINARY_METRICS.items()}}
    r["calibration"] = {
        "ece": m(cal.expected_calibration_error, y, probs),
        "brier": m(cal.brier_score, y, probs),
        "ece_malignant": m(cal.expected_calibration_error, (y == 2).astype(int), probs[:, 2]),
    }
    curves["reliability"] = cal.reliability_curve(y[sel], probs[sel])
    curves["confusion"] = cm
    if "subtype_pred" in t.columns:
        r.update(_subtype_metrics(t, sel & (y > 0) & t["subtype"].notna().to_numpy(), m))
    return r, curves


def _subtype_right(t: pd.DataFrame) -> np.ndarray:
    """1.0 where the predicted subtype is the true one (an image given no subtype counts as wrong)."""
    return (t["subtype"].fillna("") == t["subtype_pred"].fillna("").str.strip()).to_numpy().astype(float)


def _subtype_metrics(t: pd.DataFrame, tumour: np.ndarray, m) -> dict:
    """Subtype accuracy, balanced accuracy, the most common subtype's share and the confusion matrix, on tumour images.

    An image given no subtype (called normal) is wrong for its subtype; balanced accuracy is the
    mean recall over the subtypes present, so rare subtypes weigh as much as common ones.
    """
    truth = t["subtype"].fillna("")
    pred = t["subtype_pred"].fillna("").str.strip()
    rows = sorted(set(truth[tumour]))
    columns = rows + sorted(set(pred[tumour]) - set(rows) - {""}) + ["(no subtype)"]
    index = {n: i for i, n in enumerate(columns)}
    ys = truth.map(index).fillna(-1).to_numpy(int)
    ps = pred.map(index).fillna(len(columns) - 1).to_numpy(int)
    common = max(rows, key=lambda n: int((truth[tumour] == n).sum())) if rows else ""
    cm = cls.confusion_matrix(ys[tumour], ps[tumour], len(columns))[: len(rows)]
    return {
        "subtype_accuracy": m(seg.weighted_mean, _subtype_right(t), subset=tumour),
        "subtype_balanced_accuracy": m(lambda a, b, weights=None: cls.multiclass_balanced_accuracy(a, b, weights, len(columns)),
                                       ys, ps, subset=tumour),
        "subtype_most_common": {"subtype": common, "share": m(seg.weighted_mean, (truth == common).to_numpy(float), subset=tumour)},
        "subtype_confusion_matrix": {"rows": rows, "columns": columns, "matrix": cm.astype(int).tolist(),
                                     "note": "tumour images; rows truth, columns prediction"},
    }


def _spacing_of(image_path: Path):
    """Pixel spacing (mm) of a DICOM image, None for other formats or when unknown."""
    from osteolens.io.dicom import read_dicom_spacing
    from osteolens.io.images import sniff_format

    try:
        return read_dicom_spacing(image_path) if sniff_format(image_path) == "dicom" else None
    except ImageReadError:
        return None


def _read_pred_mask(t_row, base: Path, shape):
    path = Path(t_row)
    path = path if path.is_absolute() else base / path
    return read_mask(path, expected_shape=shape)


def _number_or_nan(text: str) -> float:
    try:
        return decimal_number(text)
    except ValueError:
        return np.nan


def _numbers(text: str, what: str, case_id: str) -> list[float]:
    try:
        return [decimal_number(v) for v in text.split()]
    except ValueError:
        raise EvaluationError(f"case {case_id}: {what} {text.strip()!r} is not numbers") from None


def _detections(row: pd.Series, p_tumour: float) -> list[tuple[tuple, float]]:
    """A row's boxes with their scores: a box's fifth number, else its ``box_scores`` entry, else ``p_tumour``."""
    boxes = str(row["boxes"]).split(";")
    scores = str(row.get("box_scores", "") or "").strip()
    scores = [_numbers(v, "box score", row["case_id"]) for v in scores.split(";")] if scores else None
    if scores is not None and len(scores) != len(boxes):
        raise EvaluationError(f"case {row['case_id']}: {len(boxes)} boxes but {len(scores)} box_scores")
    dets = []
    for k, part in enumerate(boxes):
        nums = _numbers(part, "box", row["case_id"])
        if len(nums) not in (4, 5):
            raise EvaluationError(f"case {row['case_id']}: box {part!r} needs 4 or 5 numbers")
        if len(nums) == 5:
            score = nums[4]
        elif scores is not None:
            if len(scores[k]) != 1:
                raise EvaluationError(f"case {row['case_id']}: box score {k + 1} needs one number")
            score = scores[k][0]
        else:
            score = p_tumour
        dets.append((tuple(nums[:4]), score))
    return dets


def _segmentation_and_detection(inp: EvaluationInputs, W: np.ndarray, boot: dict) -> tuple[dict, dict, pd.DataFrame]:
    t = inp.table
    base = inp.predictions_path.parent
    has_mask = "mask_pred" in t.columns
    has_boxes = "boxes" in t.columns
    p_tumour = ((1 - t["p_normal"]) if "p_normal" in t.columns else pd.Series(np.ones(len(t)))).to_numpy(float)

    def one_case(i: int):
        row = t.iloc[i]
        truth = read_mask(inp.manifest.resolve(row["mask"])) if row["mask"] else None
        pred_mask = None
        if has_mask and str(row["mask_pred"]).strip():
            try:
                pred_mask = _read_pred_mask(str(row["mask_pred"]).strip(), base, truth.shape if truth is not None else None)
            except ImageReadError as exc:
                raise EvaluationError(f"predicted mask of case {row['case_id']}: {exc}") from exc
        record = {
            "case_id": row["case_id"],
            "truth_area": float(truth.sum()) if truth is not None else np.nan,
            "image_area": float(truth.size) if truth is not None else np.nan,
        }
        if pred_mask is not None and truth is not None:
            record.update(seg.segmentation_case_metrics(truth, pred_mask))
            record.update(seg.long_axis_case_metrics(truth, pred_mask))
            spacing = _spacing_of(inp.manifest.resolve(row["image"]))
            record["hd95_mm"] = seg.hausdorff95(truth, pred_mask, spacing) if spacing else np.nan
        dets = []
        if has_boxes and str(row["boxes"]).strip():
            dets = _detections(row, float(p_tumour[i]))
        elif pred_mask is not None:
            dets = [(b, float(p_tumour[i])) for b in det.boxes_from_mask(pred_mask)]
        return record, (det.boxes_from_mask(truth) if truth is not None else []), dets

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one_case, range(len(t))))
    per_case = [r[0] for r in results]
    truth_boxes = [r[1] for r in results]
    detections = [r[2] for r in results]
    pc = pd.DataFrame(per_case)
    out_seg: dict = {}
    out_det: dict = {}
    if has_mask and "dice" in pc.columns:
        tumour = (pc["truth_area"] > 0).to_numpy() & pc["dice"].notna().to_numpy()
        normal = (pc["truth_area"] == 0).to_numpy() & pc["dice"].notna().to_numpy()

        def m(metric, *args, subset):
            return bootstrap_metric(metric, args, weights=W, subset=subset, **boot)

        out_seg = {
            "dice_mean_tumour": m(seg.weighted_mean, pc["dice"].to_numpy(float), subset=tumour),
            "iou_mean_tumour": m(seg.weighted_mean, pc["iou"].to_numpy(float), subset=tumour),
            "dice_pooled_tumour": m(seg.pooled_dice, pc["intersection"].to_numpy(float), pc["truth_area"].to_numpy(float), pc["pred_area"].to_numpy(float), subset=tumour),
            "hd95_mean_tumour_px": m(seg.weighted_mean, pc["hd95"].to_numpy(float), subset=tumour),
            "false_positive_mask_rate_normal": m(seg.weighted_mean, (pc["pred_area"] > 0).to_numpy(float), subset=normal),
            "hd95_undefined_tumour_cases": int(np.isnan(pc.loc[tumour, "hd95"]).sum()),
        }
        # the largest lesion's long axis, as the analysis reports it, against the truth's
        measurable = tumour & (pc["truth_long_axis"] > 0).to_numpy()
        found = measurable & (pc["pred_long_axis"] > 0).to_numpy()
        ratio = pc["pred_long_axis"].to_numpy(float) / pc["truth_long_axis"].where(measurable).to_numpy(float)
        pc["long_axis_within_20pct"] = np.where(measurable, np.abs(ratio - 1) <= 0.2, np.nan)  # a missed lesion is not
        out_seg["long_axis_within_20pct_tumour"] = m(seg.weighted_mean, pc["long_axis_within_20pct"].to_numpy(float),
                                                     subset=measurable)
        log_ratio = np.log(np.where(found, ratio, 1.0))
        out_seg["long_axis_ratio_geomean_found"] = m(lambda v, weights=None: np.exp(seg.weighted_mean(v, weights)), log_ratio,
                                                     subset=found)
        out_seg["long_axis_abs_rel_error_found"] = m(seg.weighted_mean, np.abs(ratio - 1), subset=found)
        with_mm = tumour & pc["hd95_mm"].notna().to_numpy()
        if with_mm.any():
            out_seg["hd95_mean_tumour_mm"] = m(seg.weighted_mean, pc["hd95_mm"].to_numpy(float), subset=with_mm)
    if has_boxes or has_mask:
        at = {thr: det.match_detections(truth_boxes, detections, thr) for thr in det.IOU_THRESHOLDS_COCO}

        def apm(thr):
            return lambda idx, weights=None: det.average_precision(at[thr], weights)

        idx = np.arange(len(t))
        out_det["ap50"] = bootstrap_metric(apm(0.5), (idx,), weights=W, **boot)
        out_det["ap50_95"] = bootstrap_metric(
            lambda i, weights=None: np.mean([det.average_precision(at[th], weights) for th in det.IOU_THRESHOLDS_COCO], axis=0),
            (idx,), weights=W, **boot)
        out_det["froc_iou"] = 0.5
        out_det["froc"] = {
            str(rate): bootstrap_metric(lambda i, weights=None, r=rate: det.froc_sensitivity(at[0.5], r, weights), (idx,), weights=W, **boot)
            for rate in det.FROC_RATES
        }
        out_det["n_truth_boxes"] = int(sum(len(b) for b in truth_boxes))
        out_det["n_detections"] = int(sum(len(d) for d in detections))
    return out_seg, out_det, pc


def _strata(t: pd.DataFrame, pc: pd.DataFrame) -> dict[str, pd.Series]:
    age = pd.to_numeric(t["age"], errors="coerce")
    age_band = pd.Series([next((n for lo, hi, n in AGE_BANDS if lo <= a < hi), None) if np.isfinite(a) else None for a in age])
    size = pc["truth_area"] / pc["image_area"] if "image_area" in pc.columns else pd.Series([np.nan] * len(t))
    size_band = pd.Series([next((n for lo, hi, n in SIZE_BANDS if lo <= s < hi), None) if np.isfinite(s) and s > 0 else None for s in size])
    return {
        "subtype": t["subtype"], "centre": t["centre"], "site": t["site"].fillna("").str.split(";").str[0].replace("", None),
        "sex": t["sex"], "age_band": age_band, "lesion_size": size_band,
    }


def _stratified(t: pd.DataFrame, pc: pd.DataFrame, W: np.ndarray, boot: dict) -> dict:
    if "p_normal" not in t.columns:
        return {}
    y = t["label"].map({k: i for i, k in enumerate(LABELS)}).fillna(-1).to_numpy(int)
    probs = t[list(PROB_COLUMNS)].to_numpy(float)
    pred, _ = _decisions(t, probs)
    right_subtype = _subtype_right(t) if "subtype_pred" in t.columns else None
    out: dict = {}
    for name, values in _strata(t, pc).items():
        rows = []
        for stratum in sorted(v for v in values.dropna().unique()):
            s = (values == stratum).to_numpy() & (y >= 0)
            if s.sum() == 0:
                continue

            def m(metric, *args, subset=s):
                return bootstrap_metric(metric, args, weights=W, subset=subset, **boot).to_dict()

            row = {"stratum": str(stratum), "n": int(s.sum()), "accuracy": m(cls.multiclass_accuracy, y, pred)}
            row["tumour_sensitivity"] = m(cls.sensitivity, y > 0, pred > 0, subset=s & (y > 0)) if (s & (y > 0)).any() else None
            if name == "subtype" and right_subtype is not None:
                row["subtype_recall"] = m(seg.weighted_mean, right_subtype, subset=s & (y > 0)) if (s & (y > 0)).any() else None
            row["auc_tumour_vs_normal"] = m(cls.roc_auc, y > 0, probs[:, 1] + probs[:, 2])
            row["auc_malignant"] = m(cls.roc_auc, y == 2, probs[:, 2])
            if "dice" in pc.columns:
                ok = s & (pc["truth_area"] > 0).to_numpy() & pc["dice"].notna().to_numpy()
                row["dice_mean_tumour"] = m(seg.weighted_mean, pc["dice"].to_numpy(float), subset=ok) if ok.any() else None
                ok = s & pc["long_axis_within_20pct"].notna().to_numpy()
                row["long_axis_within_20pct_tumour"] = (m(seg.weighted_mean, pc["long_axis_within_20pct"].to_numpy(float), subset=ok)
                                                        if ok.any() else None)
            rows.append(row)
        out[name] = rows
    return out


def _to_jsonable(obj):
    if isinstance(obj, MetricResult):
        return obj.to_dict()
    if isinstance(obj, dict):
        return {k: _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def evaluate(
    predictions: str | Path,
    truth: str | Path,
    out: str | Path,
    splits: str | Path | None = None,
    split: str | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    target_sensitivity: float = 0.9,
    stratify: bool = True,
    plots: bool = True,
) -> dict:
    """Evaluate predictions against a manifest; write ``metrics.json``, ``summary.md``, plots.

    Args:
        predictions: predictions CSV (see module docstring).
        truth: the manifest.
        out: output folder.
        splits: optional splits CSV to restrict the evaluation to one split.
        split: which split (``test``) or fold number.
        n_boot: bootstrap resamples.
        seed: bootstrap seed.
        target_sensitivity: the sensitivity at which to report the "at sensitivity" operating point.
        stratify: also write stratified tables.
        plots: write PNG plots.

    Returns:
        The metrics dict that was written to ``metrics.json``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    inp = load_inputs(predictions, truth, splits, split)
    t = inp.table
    W = group_bootstrap_weights(t["group_id"].to_numpy(), n_boot, seed)
    boot = {"level": 0.95}
    metrics: dict = {
        "notice": RESEARCH_NOTICE,
        "software": f"osteolens {__version__}",
        "predictions": str(Path(predictions).resolve()),
        "truth": str(Path(truth).resolve()),
        "split": split,
        "n_cases": len(t),
        "n_groups": int(t["group_id"].nunique()),
        "n_prediction_errors": inp.n_failed,
        "n_truth_without_prediction": inp.n_missing,
        "n_predictions_without_truth": inp.n_unmatched,
        "bootstrap": {"n_boot": n_boot, "seed": seed, "level": 0.95, "resampled_unit": "group_id (patient)"},
    }
    curves: dict = {}
    if "p_normal" in t.columns:
        metrics["classification"], curves = _classification(t, W, boot, target_sensitivity)
    seg_m, det_m, pc = _segmentation_and_detection(inp, W, boot)
    if seg_m:
        metrics["segmentation"] = seg_m
    if det_m:
        metrics["detection"] = det_m
    if stratify:
        metrics["strata"] = _stratified(t, pc, W, boot)
    metrics = _to_jsonable(metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    pc.to_csv(out / "per_case.csv", index=False)
    if plots and curves:
        from osteolens.evaluation.plots import write_plots

        metrics["plots"] = write_plots(curves, out)
    from osteolens.evaluation.summary import write_summary

    write_summary(metrics, out / "summary.md")
    return metrics
