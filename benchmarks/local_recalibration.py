"""Does fitting a model's calibration on a site's own images fix what a new site does to its probabilities?

The site is played by the centres a model never saw: a model trained on BTXRD centre 1 (``--splits
work/btxrd/splits_centre1.csv``, centres 2 and 3 in its ``test`` split). Those external images are cut
in two by patient group, stratified by label: one half is the site's calibration set
(``osteolens recalibrate MODEL --local``), the other its evaluation set. Both the model as trained
(calibrated on centre 1) and its locally recalibrated copy analyse the evaluation half through the
real pipeline (``osteolens analyze``), and their calibration error, malignant sensitivity and
specificity at each one's own threshold, 3-class accuracy and referral rate are compared, paired,
over patient-group resamples. Repeated for several cuts (``--seeds``): a cut decides which images
land in which half, which moves the figures.

Usage:
    python benchmarks/local_recalibration.py --model work/models/centre1 \\
        --splits work/btxrd/splits_centre1.csv --tag centre1

Prints a table and writes ``benchmarks/results/local_recalibration_<tag>.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from osteolens.data.clinical import clinical_table
from osteolens.data.manifest import LABELS, load_manifest
from osteolens.data.splits import assign_groups, cases_in_split, load_splits
from osteolens.evaluation.bootstrap import group_bootstrap_weights, percentile_ci
from osteolens.evaluation.calibration import expected_calibration_error
from osteolens.evaluation.classification import multiclass_accuracy, sensitivity, specificity
from osteolens.evaluation.segmentation import weighted_mean
from osteolens.inference.analyze import analyze
from osteolens.models.recalibrate import recalibrate_on_local_data
from osteolens.models.registry import load_model

from btxrd_options import add_btxrd_options

REPO = Path(__file__).resolve().parents[1]


def _decided(t: pd.DataFrame) -> np.ndarray:
    """The label the analysis decided, as a class index; ``indeterminate`` counts as referred, not decided."""
    return t["label"].map({k: i for i, k in enumerate(LABELS)}).fillna(-1).to_numpy(int)


def figures(t: pd.DataFrame, threshold: float) -> dict:
    """Per-image inputs of each figure: the truth, the probabilities, the decisions."""
    y = t["truth"].map({k: i for i, k in enumerate(LABELS)}).to_numpy(int)
    probs = t[["p_normal", "p_benign", "p_malignant"]].to_numpy(float)
    return {"y": y, "probs": probs, "malignant": probs[:, 2] >= threshold, "decided": _decided(t)}


METRICS = {
    "ece": lambda f, w: expected_calibration_error(f["y"], f["probs"], weights=w),
    "malignant_sensitivity": lambda f, w: sensitivity(f["y"] == 2, f["malignant"], weights=w),
    "malignant_specificity": lambda f, w: specificity(f["y"] == 2, f["malignant"], weights=w),
    "accuracy_decided": lambda f, w: multiclass_accuracy(f["y"][f["decided"] >= 0], f["decided"][f["decided"] >= 0],
                                                         weights=None if w is None else w[..., f["decided"] >= 0]),
    "referred": lambda f, w: weighted_mean((f["decided"] < 0).astype(float), w),
}


def compare(source: pd.DataFrame, copy: pd.DataFrame, thresholds: tuple[float, float], n_boot: int) -> dict:
    """Each figure for the source and the copy with 95% CIs, and the paired difference (copy - source)."""
    W = group_bootstrap_weights(source["group_id"].to_numpy(), n_boot, 0)
    fa, fb = figures(source, thresholds[0]), figures(copy, thresholds[1])
    out = {}
    for name, metric in METRICS.items():
        a, b = float(metric(fa, None)), float(metric(fb, None))
        with np.errstate(divide="ignore", invalid="ignore"):
            ba, bb = np.asarray(metric(fa, W), float), np.asarray(metric(fb, W), float)
        out[name] = {"source": [a, *percentile_ci(ba)], "copy": [b, *percentile_ci(bb)],
                     "change": [b - a, *percentile_ci(bb - ba)]}
    return out


def _analysed(model, cases, manifest, group_of: pd.Series, work: Path) -> pd.DataFrame:
    """``osteolens analyze`` on ``cases``: its predictions, indexed by case id, with truth and patient group."""
    work.mkdir(parents=True, exist_ok=True)
    clinical_table(cases).to_csv(work / "clinical.csv", index=False)
    analyze([manifest.resolve(c.image) for c in cases], work / "analysis", model=model,
            clinical_csv=work / "clinical.csv", overlays=False)
    t = pd.read_csv(work / "analysis" / "predictions.csv", dtype={"image": str}, keep_default_na=False)
    by_name = {Path(c.image).name: c for c in cases}
    bad = t[t["status"] != "ok"]
    if len(bad):
        raise SystemExit(f"{len(bad)} image(s) failed analysis, e.g. {bad.iloc[0]['image']}: {bad.iloc[0]['error']}")
    t["case_id"] = t["image"].map(lambda s: by_name[s].case_id)
    t["group_id"] = t["case_id"].map(group_of)
    t["truth"] = t["image"].map(lambda s: by_name[s].label)
    return t.set_index("case_id")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_btxrd_options(ap, split="test", tag="centre1")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="cuts of the external images into halves")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = ap.parse_args()
    work = REPO / "work" / "bench" / f"local_recalibration_{args.tag}"
    manifest = load_manifest(args.manifest)
    splits = load_splits(args.splits)
    external = cases_in_split(manifest, splits, args.split)
    source = load_model(args.model)
    print(f"{len(external)} external images ({args.split} split of {args.splits}); model {source.name} "
          f"{source.metadata['version']} ({args.model})")
    group_of = splits.set_index("case_id")["split_group"].astype(str)  # duplicate images' groups linked
    analysed = _analysed(source, external, manifest, group_of, work / "source")
    runs = []
    for seed in args.seeds:
        halves = assign_groups(np.array([group_of[c.case_id] for c in external]), np.array([c.label for c in external]),
                               [0.5, 0.5], seed)
        table = splits[["case_id", "group_id", "split_group", "label", "centre"]].copy()
        where = dict(zip((c.case_id for c in external), np.array(["calibration", "evaluation"])[halves]))
        table["split"] = table["case_id"].map(where).fillna("excluded")
        cut = work / f"seed{seed}"
        cut.mkdir(parents=True, exist_ok=True)
        table.to_csv(cut / "splits.csv", index=False)
        meta = recalibrate_on_local_data(args.model, cut / "model", args.manifest, cut / "splits.csv", "calibration",
                                         version=f"{source.metadata['version']}+local{seed}")
        evaluation = [c for c, h in zip(external, halves) if h == 1]
        ids = [c.case_id for c in evaluation]
        copy = _analysed(load_model(cut / "model"), evaluation, manifest, group_of, cut).loc[ids]
        result = compare(analysed.loc[ids], copy, (source.metadata["calibration"]["malignant_threshold"],
                                     meta["calibration"]["malignant_threshold"]), args.n_boot)
        runs.append({"seed": seed, "n_calibration": meta["recalibration"]["local"]["n_images"],
                     "calibration_labels": meta["recalibration"]["local"]["labels"],
                     "n_evaluation": len(evaluation), "n_evaluation_groups": int(copy["group_id"].nunique()),
                     "temperature": [source.metadata["calibration"]["temperature"], meta["calibration"]["temperature"]],
                     "malignant_threshold": [source.metadata["calibration"]["malignant_threshold"],
                                             meta["calibration"]["malignant_threshold"]],
                     "threshold_stability": meta["recalibration"]["local"]["malignant_threshold_stability"],
                     "figures": result})
        print(f"\ncut {seed}: fitted on {runs[-1]['n_calibration']} images {runs[-1]['calibration_labels']}, "
              f"scored on {len(evaluation)} ({runs[-1]['n_evaluation_groups']} groups); temperature "
              f"{runs[-1]['temperature'][0]:.2f} -> {runs[-1]['temperature'][1]:.2f}, malignant threshold "
              f"{runs[-1]['malignant_threshold'][0]:.3f} -> {runs[-1]['malignant_threshold'][1]:.3f} (refitted on patient "
              f"resamples of the calibration half: {meta['recalibration']['local']['malignant_threshold_stability']['threshold']['ci_low']:.3f}-"
              f"{meta['recalibration']['local']['malignant_threshold_stability']['threshold']['ci_high']:.3f})")
        print(f"{'figure':24s} {'as trained':>22s} {'recalibrated':>22s} {'change (paired)':>24s}")
        for name, v in result.items():
            cell = lambda x: f"{x[0]:.3f} ({x[1]:.3f}-{x[2]:.3f})"  # noqa: E731
            print(f"{name:24s} {cell(v['source']):>22s} {cell(v['copy']):>22s} {cell(v['change']):>24s}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"local_recalibration_{args.tag}.json"
    path.write_text(json.dumps({
        "tag": args.tag, "model": source.name, "model_version": source.metadata["version"],
        "model_sha256": source.metadata["sha256"], "splits_file": str(args.splits), "external_split": args.split,
        "n_external": len(external), "n_boot": args.n_boot,
        "note": "each figure [value, 95% CI low, high] over patient-group resamples of the evaluation half; 'change' is "
                "copy - source, paired; each model at its own malignant threshold; accuracy over the images each did "
                "not refer",
        "cuts": runs}, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
