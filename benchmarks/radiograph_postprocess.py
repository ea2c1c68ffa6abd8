"""Choose the radiograph model's mask post-processing on the validation split (never on test).

Usage: python benchmarks/radiograph_postprocess.py [--model osteolens-radiograph]
          [--manifest work/btxrd/manifest.csv] [--splits work/btxrd/splits.csv] [--write MODEL_DIR] [--tag TAG]

Runs the model on every validation image once per candidate mask input size (the model's own
size and an enlarged view, ``--mask-sizes``; small lesions get more pixels), then scores a grid of
post-processing settings (threshold, closing radius, smallest kept component relative to the
largest, hole filling; see ``osteolens.inference.postprocess``) by mean Dice on tumour images and
AP@0.5 on all images, and picks the best mean of the two. ``--write`` stores the choice in a copy
of the model's metadata (``calibration.mask_input_size`` and ``calibration.mask_postprocess``) in
MODEL_DIR. Writes benchmarks/results/radiograph_postprocess[_TAG].json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from osteolens.data.manifest import load_manifest
from osteolens.data.splits import load_splits
from osteolens.evaluation import detection as det
from osteolens.evaluation.segmentation import dice
from osteolens.inference.analyze import analyze_image
from osteolens.inference.postprocess import MaskPostprocess, lesions_for_label
from osteolens.io.images import read_image, read_mask
from osteolens.models.registry import load_model, resolve_model
from osteolens.transforms.preprocess import enlarged_size

REPO = Path(__file__).resolve().parents[1]
GRID = {"threshold": (0.05, 0.1, 0.2, 0.3, 0.4, 0.5), "closing": (0.0, 0.01, 0.02, 0.04),
        "min_fraction": (0.0, 0.1, 0.25, 0.5, 1.0), "fill_holes": (False, True)}


def score(cases, pp: MaskPostprocess) -> dict:
    dices, truth_boxes, detections = [], [], []
    for c in cases:
        mask, boxes, scores = lesions_for_label(c["prob"], c["label"], c["p_tumour"], pp)
        if c["truth"].any():
            dices.append(dice(c["truth"], mask))
        truth_boxes.append(c["truth_boxes"])
        detections.append(list(zip(boxes, scores)))
    ap50 = float(det.average_precision(det.match_detections(truth_boxes, detections, 0.5)))
    return {"dice_mean_tumour": float(np.mean(dices)), "ap50": ap50}


def validation_cases(model, manifest, cases) -> list[dict]:
    """The model's mask probabilities, tumour probability and label on each case, with the truth."""
    out = []
    for c in cases:
        arr, props = read_image(manifest.resolve(c.image))
        res = analyze_image(model, arr, props, {"age": c.age, "sex": c.sex, "region": c.region, "view": c.view})
        truth = read_mask(manifest.resolve(c.mask), expected_shape=res.mask_probability.shape) if c.mask else \
            np.zeros(res.mask_probability.shape, bool)
        out.append({"prob": res.mask_probability, "p_tumour": res.p_benign + res.p_malignant, "label": res.label,
                    "truth": truth, "truth_boxes": det.boxes_from_mask(truth)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="osteolens-radiograph")
    ap.add_argument("--manifest", default=str(REPO / "work" / "btxrd" / "manifest.csv"))
    ap.add_argument("--splits", default=str(REPO / "work" / "btxrd" / "splits.csv"))
    ap.add_argument("--write", default=None, help="folder for a copy of the model with the chosen post-processing")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    ap.add_argument("--mask-sizes", type=int, nargs="+", default=None,
                    help="mask input sizes to try (default: the model's size and 1.25 times it, multiples of 32)")
    ap.add_argument("--tag", default="", help="suffix of the results file (radiograph_postprocess_<tag>.json)")
    args = ap.parse_args()
    model = load_model(args.model)
    manifest = load_manifest(args.manifest)
    splits = load_splits(args.splits)
    val_ids = set(splits.loc[splits["split"] == "val", "case_id"].astype(str))
    val_cases = [c for c in manifest.cases if c.case_id in val_ids]
    calib = model.metadata["calibration"]
    current = MaskPostprocess.from_calibration(calib)
    current_size = int(calib.get("mask_input_size", model.image_size))
    sizes = args.mask_sizes or [model.image_size, enlarged_size(model.image_size)]
    rows, baseline = [], None
    for size in sizes:
        sized = replace(model, metadata={**model.metadata, "calibration": {**calib, "mask_input_size": size}})
        cases = validation_cases(sized, manifest, val_cases)
        if size == current_size:
            baseline = score(cases, current)
        for values in itertools.product(*GRID.values()):
            pp = MaskPostprocess(**dict(zip(GRID, values)))
            rows.append({"mask_input_size": size, **pp.to_dict(), **score(cases, pp)})
    for r in rows:
        r["objective"] = (r["dice_mean_tumour"] + r["ap50"]) / 2
    rows.sort(key=lambda r: -r["objective"])
    best = rows[0]
    print(f"validation split: {len(cases)} images, {sum(c['truth'].any() for c in cases)} with a lesion")
    if baseline:
        print(f"current (mask input {current_size} px, {current.to_dict()}): "
              f"Dice {baseline['dice_mean_tumour']:.3f}, AP50 {baseline['ap50']:.3f}")
    print(f"{'size':>5s} {'threshold':>9s} {'closing':>7s} {'min_frac':>8s} {'fill':>5s} {'Dice':>6s} {'AP50':>6s}")
    for r in rows[:10]:
        print(f"{r['mask_input_size']:5d} {r['threshold']:9.2f} {r['closing']:7.2f} {r['min_fraction']:8.2f} "
              f"{str(r['fill_holes']):>5s} {r['dice_mean_tumour']:6.3f} {r['ap50']:6.3f}")
    chosen = {k: best[k] for k in ("threshold", "closing", "min_fraction", "fill_holes")}
    chosen["min_component"] = current.min_component
    if args.write:
        src, dst = resolve_model(args.model), Path(args.write)
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst)
        meta = json.loads((dst / "metadata.json").read_text())
        meta["calibration"]["mask_input_size"] = best["mask_input_size"]
        meta["calibration"]["mask_postprocess"] = chosen
        meta["calibration"]["mask_threshold"] = chosen["threshold"]
        meta["calibration"]["val_mask_postprocess"] = {"dice_mean_tumour": best["dice_mean_tumour"], "ap50": best["ap50"],
                                                       "chosen_on": "validation split", "mask_input_sizes": sizes,
                                                       "grid": {k: list(v) for k, v in GRID.items()}}
        (dst / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
        print(f"wrote {dst} with mask input {best['mask_input_size']} px and calibration.mask_postprocess = {chosen}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"model": model.name, "version": model.metadata["version"], "splits_file": args.splits, "split": "val",
              "n_images": len(cases), "current": {"mask_input_size": current_size, **current.to_dict(), **(baseline or {})},
              "mask_input_sizes": sizes, "chosen": {"mask_input_size": best["mask_input_size"], **chosen},
              "chosen_scores": {k: best[k] for k in ("dice_mean_tumour", "ap50")},
              "best_per_size": [next(r for r in rows if r["mask_input_size"] == size) for size in sizes], "top": rows[:20]}
    name = f"radiograph_postprocess{'_' + args.tag if args.tag else ''}.json"
    (out / name).write_text(json.dumps(record, indent=2, default=str))


if __name__ == "__main__":
    main()
