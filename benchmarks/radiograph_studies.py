"""Reading a study's views together: class figures per study, and against each image read alone.

BTXRD has no study identifiers. Its patient groups (``work/btxrd/manifest.csv``, images of one
patient: several views, sometimes follow-up, and for normal images sometimes several patients of one
age and sex) stand in: each group's images, in image-id order, are cut into studies of at most
``--max-views`` images (default 3, as an examination's views; 0 keeps whole groups). Their ids go
into the clinical table's ``study`` column, and ``osteolens analyze`` (the real pipeline) writes
``studies.csv`` with each study's reading (``osteolens.inference.study``): one per body part (the table's
site, else its region) and side (BTXRD gives none), so a stand-in study whose images show two sites is
read as two. "Per study" below means per reading.

Figures, with 95% CIs from resampling patient groups (studies nest in groups):
- per image: macro, tumour-vs-normal and malignant AUC of each image's own probabilities and of its
  study's, and the paired difference;
- per study: the same AUCs, calibration error, malignant sensitivity and specificity at the model's
  recorded threshold, and how many studies are referred as indeterminate; the same for the images.

Usage:
    python benchmarks/radiograph_studies.py --split val --tag val_v160
    python benchmarks/radiograph_studies.py --split test --tag holdout_v160

Writes ``benchmarks/results/radiograph_studies_<tag>.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from osteolens.data.clinical import clinical_table
from osteolens.data.manifest import load_manifest
from osteolens.data.splits import cases_in_split, load_splits
from osteolens.evaluation.bootstrap import bootstrap_metric, group_bootstrap_weights, percentile_ci
from osteolens.evaluation.calibration import expected_calibration_error
from osteolens.evaluation.classification import macro_auc, roc_auc, sensitivity, specificity
from osteolens.evaluation.segmentation import weighted_mean
from osteolens.inference.analyze import analyze
from osteolens.models.registry import load_model

from btxrd_options import add_btxrd_options

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("normal", "benign", "malignant")
PROBS = ["p_normal", "p_benign", "p_malignant"]


def study_ids(cases, max_views: int) -> dict[str, str]:
    """Each case's study: its patient group cut, in image-id order, into runs of ``max_views`` (0: whole groups)."""
    ids, seen = {}, {}
    for c in sorted(cases, key=lambda c: c.case_id):
        k = seen.get(c.group_id, 0)
        seen[c.group_id] = k + 1
        ids[c.case_id] = c.group_id if max_views <= 0 else f"{c.group_id}/{k // max_views}"
    return ids


#: macro, tumour-vs-normal and malignant-vs-rest AUC of labels y (0-2) and probabilities P, as bootstrap_metric calls them
AUCS = {
    "macro_auc": lambda y, P, weights=None: macro_auc(y, P, weights),
    "auc_tumour_vs_normal": lambda y, P, weights=None: roc_auc(y > 0, P[:, 1] + P[:, 2], weights),
    "auc_malignant": lambda y, P, weights=None: roc_auc(y == 2, P[:, 2], weights),
}


def unit_figures(y, P, labels, groups, W, threshold: float) -> dict:
    """AUCs, ECE, malignant sensitivity/specificity at ``threshold`` and referral rate, with CIs from the
    group-bootstrap weights ``W``."""
    out = {name: bootstrap_metric(auc, (y, P), weights=W).to_dict() for name, auc in AUCS.items()}
    out["ece"] = bootstrap_metric(expected_calibration_error, (y, P), weights=W).to_dict()
    flagged = P[:, 2] >= threshold
    out["malignant_sensitivity"] = bootstrap_metric(sensitivity, (y == 2, flagged), weights=W).to_dict()
    out["malignant_specificity"] = bootstrap_metric(specificity, (y == 2, flagged), weights=W).to_dict()
    referred = (np.asarray(labels) == "indeterminate").astype(float)
    out["referred_rate"] = bootstrap_metric(weighted_mean, (referred,), weights=W).to_dict()
    out["n"], out["n_groups"] = int(len(y)), int(len(set(groups)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_btxrd_options(ap, split="val", tag="val")
    ap.add_argument("--max-views", type=int, default=3, help="images per study at most (0: whole patient groups)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    ap.add_argument("--n-boot", type=int, default=2000)
    args = ap.parse_args()
    manifest = load_manifest(args.manifest)
    cases = cases_in_split(manifest, load_splits(args.splits), args.split)
    study_of = study_ids(cases, args.max_views)
    clinical = clinical_table(cases)
    clinical["study"] = [study_of[Path(name).stem] for name in clinical["image"]]
    work = REPO / "work" / "bench" / f"radiograph_studies_{args.tag}"
    work.mkdir(parents=True, exist_ok=True)
    clinical.to_csv(work / "clinical.csv", index=False)
    model = load_model(args.model)
    analyze([manifest.resolve(c.image) for c in cases], work / "analysis", model=model,
            clinical_csv=work / "clinical.csv", overlays=False, report=False)
    threshold = model.metadata["calibration"]["malignant_threshold"]

    truth = {c.case_id: CLASSES.index(c.label) for c in cases}
    group = {c.case_id: c.group_id for c in cases}
    images = pd.read_csv(work / "analysis" / "predictions.csv", keep_default_na=False)
    studies = pd.read_csv(work / "analysis" / "studies.csv", keep_default_na=False)  # a row per study, body part, side
    if (images["status"] != "ok").any() or (studies["status"] != "ok").any():
        raise SystemExit(f"some images failed: {images.loc[images['status'] != 'ok', 'error'].tolist()}")
    reading_of = {name: i for i, names in studies["images"].items() for name in names.split(";")}
    ids = images["image"].map(lambda s: Path(s).stem)
    y = ids.map(truth).to_numpy()
    groups = ids.map(group).to_numpy()
    own = images[PROBS].to_numpy(float)
    image_reading = images["image"].map(reading_of)
    joined = studies.loc[image_reading]
    combined = joined[PROBS].to_numpy(float)

    study_truth = pd.Series(y, index=image_reading).groupby(level=0).agg(["min", "max"])
    if (study_truth["min"] != study_truth["max"]).any():
        raise SystemExit("a study mixes labels; the benchmark scores a study by its images' one label")
    study_group = pd.Series(groups, index=image_reading).groupby(level=0).first()
    ys = study_truth.loc[studies.index, "min"].to_numpy()
    study_groups = study_group.loc[studies.index].to_numpy()
    W = group_bootstrap_weights(groups, args.n_boot, 0)  # one set of resamples for every per-image figure

    result = {"tag": args.tag, "model": model.name, "model_version": model.metadata["version"],
              "model_sha256": model.metadata["sha256"], "split": args.split, "splits_file": str(args.splits),
              "max_views": args.max_views, "n_images": int(len(images)), "n_studies": int(studies["study"].nunique()),
              "n_readings": int(len(studies)), "n_studies_read_apart": int((studies["study"].value_counts() > 1).sum()),
              "n_groups": int(len(set(groups))), "malignant_threshold": threshold,
              "study_sizes": {int(k): int(v) for k, v in studies["n_images"].value_counts().sort_index().items()},
              "per_study": unit_figures(ys, studies[PROBS].to_numpy(float), studies["label"].to_numpy(), study_groups,
                                        group_bootstrap_weights(study_groups, args.n_boot, 0), threshold),
              "per_image_own": unit_figures(y, own, images["label"].to_numpy(), groups, W, threshold),
              "per_image_study_reading": unit_figures(y, combined, joined["label"].to_numpy(), groups, W, threshold)}
    paired = {}  # the study's reading against the image's own, over the same resamples
    for name, auc in AUCS.items():
        d = np.asarray(auc(y, combined, W)) - np.asarray(auc(y, own, W))
        value = auc(y, combined) - auc(y, own)
        low, high = percentile_ci(d)
        paired[name] = {"value": float(value), "ci_low": low, "ci_high": high}
    result["per_image_difference"] = paired

    print(f"{args.tag}: {args.split} split, {len(images)} images in {result['n_studies']} studies (at most "
          f"{args.max_views or 'all'} images each) of {result['n_groups']} patient groups, read as {len(studies)} "
          f"readings ({result['n_studies_read_apart']} studies split by body part or side); model {model.name} "
          f"{model.metadata['version']}")
    print(f"{'figure':36s} {'images, own':>22s} {'images, study read':>22s} {'difference':>22s} {'per study':>22s}")

    def cell(m):
        return f"{m['value']:.3f} ({m['ci_low']:.3f}-{m['ci_high']:.3f})"

    for name in ("macro_auc", "auc_tumour_vs_normal", "auc_malignant", "ece", "malignant_sensitivity",
                 "malignant_specificity", "referred_rate"):
        diff = cell(paired[name]) if name in paired else ""
        print(f"{name:36s} {cell(result['per_image_own'][name]):>22s} "
              f"{cell(result['per_image_study_reading'][name]):>22s} {diff:>22s} {cell(result['per_study'][name]):>22s}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"radiograph_studies_{args.tag}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
