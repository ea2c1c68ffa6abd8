"""Accuracy of a radiograph model on held-out BTXRD images, with 95% CIs, against the targets.

Runs ``osteolens analyze`` (the real pipeline: files in, predictions.csv out) on the test
split's images with their clinical data, then ``osteolens evaluate`` (group bootstrap CIs), and
measures how well the saliency points at the true lesion on tumour images.

Usage:
    python benchmarks/radiograph_accuracy.py --model osteolens-radiograph \\
        --manifest work/btxrd/manifest.csv --splits work/btxrd/splits.csv --tag holdout
    python benchmarks/radiograph_accuracy.py --model work/models/centre1 \\
        --manifest work/btxrd/manifest.csv --splits work/btxrd/splits_centre1.csv --tag centre1

Prints the table of issue 3's targets and writes ``benchmarks/results/radiograph_accuracy_<tag>.json``.
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
from osteolens.evaluation.bootstrap import bootstrap_metric, group_bootstrap_weights
from osteolens.evaluation.classification import sensitivity, specificity
from osteolens.evaluation.report import evaluate
from osteolens.evaluation.segmentation import weighted_mean
from osteolens.explain.saliency import energy_inside, pointing_game_hit
from osteolens.inference.analyze import analyze
from osteolens.io.images import read_mask
from osteolens.models.registry import load_model

from btxrd_options import add_btxrd_options

REPO = Path(__file__).resolve().parents[1]
TARGETS = {
    "macro_auc": 0.93, "auc_tumour_vs_normal": 0.94, "auc_malignant": 0.96,
    "dice_mean_tumour": 0.72, "ap50": 0.80, "ece": 0.05,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_btxrd_options(ap, split="test", tag="holdout")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--clinical", choices=("true", "shuffled", "none"), default="true",
                    help="clinical inputs as recorded, permuted across the test images (how much the model "
                         "leans on them), or left out (the model's neutral codes)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = REPO / "work" / "bench" / f"radiograph_{args.tag}"
    manifest = load_manifest(args.manifest)
    cases = cases_in_split(manifest, load_splits(args.splits), args.split)
    clinical = clinical_table(cases)
    if args.clinical == "shuffled":
        cols = ["age", "sex", "site", "region", "view"]
        clinical[cols] = clinical[cols].sample(frac=1.0, random_state=0).to_numpy()
    elif args.clinical == "none":
        clinical = clinical[["image"]]
    work.mkdir(parents=True, exist_ok=True)
    clinical.to_csv(work / "clinical.csv", index=False)
    model = load_model(args.model)
    results = analyze([manifest.resolve(c.image) for c in cases], work / "analysis", model=model,
                      clinical_csv=work / "clinical.csv", overlays=False, keep_arrays=True)
    metrics = evaluate(work / "analysis" / "predictions.csv", args.manifest, work / "evaluation",
                       splits=args.splits, split=args.split, n_boot=args.n_boot, seed=0,
                       target_sensitivity=0.92)

    # saliency on tumour images: pointing game and energy inside the true mask
    by_name = {r.image: r for r in results}
    hits, energy, groups = [], [], []
    for c in cases:
        r = by_name.get(Path(c.image).name)
        if c.label in ("benign", "malignant") and c.mask and r is not None and r.status == "ok":
            truth = read_mask(manifest.resolve(c.mask))
            if truth.any():
                hits.append(float(pointing_game_hit(r.saliency, truth)))
                energy.append(energy_inside(r.saliency, truth))
                groups.append(c.group_id)
    W = group_bootstrap_weights(np.array(groups), args.n_boot, 0)
    sal = {
        "pointing_game": bootstrap_metric(weighted_mean, (np.array(hits),), weights=W).to_dict(),
        "energy_inside_mask": bootstrap_metric(weighted_mean, (np.array(energy),), weights=W).to_dict(),
    }
    # the operating point recorded in the model (malignant threshold chosen on validation)
    cal = model.metadata["calibration"]
    t = pd.read_csv(work / "analysis" / "predictions.csv")
    truth_label = {c.case_id: c.label for c in cases}
    group_of = {c.case_id: c.group_id for c in cases}
    ids = t["image"].map(lambda s: Path(s).stem)
    y = ids.map(truth_label).to_numpy() == "malignant"
    decided = t["p_malignant"].to_numpy(float) >= cal["malignant_threshold"]
    Wm = group_bootstrap_weights(ids.map(group_of).to_numpy(), args.n_boot, 0)
    op = {
        "threshold": cal["malignant_threshold"],
        "sensitivity": bootstrap_metric(sensitivity, (y, decided), weights=Wm).to_dict(),
        "specificity": bootstrap_metric(specificity, (y, decided), weights=Wm).to_dict(),
    }
    c = metrics["classification"]
    rows = [
        ("3-class macro AUC", c["macro_auc"], 0.85 if "centre" in args.tag else TARGETS["macro_auc"]),
        ("tumour vs normal AUC", c["auc"]["tumour_vs_normal"], TARGETS["auc_tumour_vs_normal"]),
        ("malignant vs rest AUC", c["auc"]["malignant"], TARGETS["auc_malignant"]),
        ("malignant sensitivity at recorded threshold", op["sensitivity"], 0.92),
        ("malignant specificity at recorded threshold", op["specificity"], 0.85),
        ("tumour Dice (tumour images)", metrics["segmentation"]["dice_mean_tumour"], TARGETS["dice_mean_tumour"]),
        ("detection AP@0.5", metrics["detection"]["ap50"], TARGETS["ap50"]),
        ("calibration ECE (lower is better)", c["calibration"]["ece"], TARGETS["ece"]),
        ("accuracy (3-class, model decision)", c["accuracy"], None),
        ("indeterminate (referred) rate", c["indeterminate_rate"], None),
        ("saliency pointing game (tumour images)", sal["pointing_game"], None),
        ("saliency energy inside mask", sal["energy_inside_mask"], None),
        ("largest lesion long axis within 20% (tumours)", metrics["segmentation"]["long_axis_within_20pct_tumour"], None),
        ("long axis, found / true (geometric mean)", metrics["segmentation"]["long_axis_ratio_geomean_found"], None),
    ]
    if "subtype_balanced_accuracy" in c:  # the 9 BTXRD subtypes, on tumour images
        rows += [("subtype accuracy (tumour images)", c["subtype_accuracy"], None),
                 ("subtype balanced accuracy (tumour images)", c["subtype_balanced_accuracy"], None)]
    print(f"{args.tag}: {metrics['n_cases']} {args.split}-split images, {metrics['n_groups']} patient groups, model {model.name} {model.metadata['version']}")
    print(f"{'figure':48s} {'value':>7s} {'95% CI':>15s} {'target':>7s} {'met':>4s}")
    table = []
    for name, m, target in rows:
        v = m["value"]
        met = "" if target is None else ("yes" if (v <= target if "ECE" in name else v >= target) else "no")
        print(f"{name:48s} {v:7.3f} {m['ci_low']:7.3f}-{m['ci_high']:.3f} {'' if target is None else f'{target:7.2f}'} {met:>4s}")
        table.append({"figure": name, **m, "target": target, "met": met or None})
    result = {"tag": args.tag, "clinical_inputs": args.clinical, "model": model.name, "model_sha256": model.metadata["sha256"], "split": args.split,
              "splits_file": str(args.splits), "n_cases": metrics["n_cases"], "n_groups": metrics["n_groups"],
              "table": table, "operating_point": op, "saliency": sal, "metrics": metrics}
    path = out / f"radiograph_accuracy_{args.tag}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
