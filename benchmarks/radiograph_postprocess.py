"""Choose the radiograph model's mask post-processing on the validation split (never on test).

Usage: python benchmarks/radiograph_postprocess.py [--model osteolens-radiograph]
          [--manifest work/btxrd/manifest.csv] [--splits work/btxrd/splits.csv] [--write MODEL_DIR] [--tag TAG]

Runs the model on every validation image once per candidate mask input size (the model's own
size and an enlarged view, ``--mask-sizes``; small lesions get more pixels), then scores a grid of
post-processing settings (threshold, closing radius, smallest kept component relative to the
largest and relative to the image, hole filling; see ``osteolens.inference.postprocess``) by mean Dice on tumour images and
AP@0.5 on all images, and picks the best mean of the two. ``--write`` stores the choice in a copy
of the model's metadata (``calibration.mask_input_size`` and ``calibration.mask_postprocess``) in
MODEL_DIR. Writes benchmarks/results/radiograph_postprocess[_TAG].json.

``--keep-first-look`` skips that choice and keeps the model's own (its mask input size and
post-processing), as when a lesion refiner joins a model whose first look is settled.

``--second-look K [K ...]`` then tries a zoomed-in second look at the top lesions
(``osteolens.inference.second_look``) at the chosen mask input size: for each context K, each
number of lesions looked at (``--lesions``, default 1) and each way of combining ("replace",
"mean") the grid is scored again (threshold, closing and smallest component; the rest as chosen for the first look), the lesions being found with the settings chosen so far. The
look is read by the model's own network (for models trained with the lesion-zoom augmentation),
or with ``--refiner`` by its lesion refiner (``osteolens attach-refiner``). The second look is
kept only if it beats the best setting without it, and is then stored as
``calibration.second_look``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from osteolens.data.clinical import encode_clinical
from osteolens.data.manifest import load_manifest
from osteolens.data.splits import cases_in_split, load_splits
from osteolens.evaluation import detection as det
from osteolens.evaluation.bootstrap import group_bootstrap_weights, percentile_ci
from osteolens.evaluation.segmentation import dice
from osteolens.inference.analyze import analyze_image
from osteolens.inference.lesion_malignancy import drop_reading
from osteolens.inference.postprocess import MaskPostprocess, lesions_for_label
from osteolens.inference.second_look import COMBINE, combine, lesion_views, view_source, views_probability
from osteolens.io.images import read_image, read_mask
from osteolens.models.registry import load_model, resolve_model
from osteolens.transforms.preprocess import enlarged_size, network_grey

from btxrd_options import add_btxrd_options

REPO = Path(__file__).resolve().parents[1]
GRID = {"threshold": (0.05, 0.1, 0.2, 0.3, 0.4, 0.5), "closing": (0.0, 0.01, 0.02, 0.04),
        "min_fraction": (0.0, 0.1, 0.25, 0.5, 1.0), "fill_holes": (False, True),
        "min_component": (0.0, 0.0002, 0.0005, 0.001)}


def per_case(cases, pp: MaskPostprocess) -> tuple[np.ndarray, det.Matched]:
    """Dice of each case (NaN without a lesion) and the detections matched at IoU 0.5."""
    dices, truth_boxes, detections = [], [], []
    for c in cases:
        mask, boxes, scores = lesions_for_label(c["prob"], c["label"], c["p_tumour"], pp)
        dices.append(dice(c["truth"], mask) if c["truth"].any() else np.nan)
        truth_boxes.append(c["truth_boxes"])
        detections.append(list(zip(boxes, scores)))
    return np.array(dices), det.match_detections(truth_boxes, detections, 0.5)


def score(cases, pp: MaskPostprocess) -> dict:
    dices, matched = per_case(cases, pp)
    return {"dice_mean_tumour": float(np.nanmean(dices)), "ap50": float(det.average_precision(matched))}


def paired_gain(cases_a, pp_a: MaskPostprocess, cases_b, pp_b: MaskPostprocess, n_boot: int = 2000) -> dict:
    """B minus A in mean Dice and AP@0.5 on the same cases, with 95% group-bootstrap intervals."""
    groups = [c["group"] for c in cases_a]
    (da, ma), (db, mb) = per_case(cases_a, pp_a), per_case(cases_b, pp_b)
    w = group_bootstrap_weights(groups, n_boot=n_boot, seed=0)
    tumour = np.isfinite(da)
    wt = w[:, tumour]
    d_dice = (wt @ (db - da)[tumour]) / wt.sum(axis=1)
    d_ap = det.average_precision(mb, w) - det.average_precision(ma, w)
    out = {}
    for name, point, boot in (("dice", np.nanmean(db) - np.nanmean(da), d_dice),
                              ("ap50", det.average_precision(mb) - det.average_precision(ma), d_ap)):
        lo, hi = percentile_ci(boot)
        out[name] = {"difference": round(float(point), 4), "ci_low": round(lo, 4), "ci_high": round(hi, 4)}
    return {**out, "n_groups": len(set(groups)), "n_boot": n_boot}


def validation_cases(model, manifest, cases) -> list[dict]:
    """The model's mask probabilities, tumour probability and label on each case, with the truth."""
    out = []
    for c in cases:
        arr, props = read_image(manifest.resolve(c.image))
        res = analyze_image(model, arr, props, {"age": c.age, "sex": c.sex, "region": c.region, "view": c.view})
        truth = read_mask(manifest.resolve(c.mask), expected_shape=res.mask_probability.shape) if c.mask else \
            np.zeros(res.mask_probability.shape, bool)
        vec = encode_clinical(c.age, c.sex, c.region, c.view)[0] if model.uses_clinical else None
        h, w = res.mask_probability.shape
        crop = tuple(res.content_box or (0, 0, w, h))  # the part of the image the network read
        read = res.grey[crop[1]:crop[3], crop[0]:crop[2]]
        seen = network_grey(read, model.image_size)
        out.append({"prob": res.mask_probability, "p_tumour": res.p_benign + res.p_malignant, "label": res.label,
                    "truth": truth, "truth_boxes": det.boxes_from_mask(truth), "group": c.group_id, "crop": crop,
                    "seen": seen,  # the refiner's views come from "refiner_seen": the same array where sizes agree
                    "refiner_seen": view_source(model, read, "refiner", seen) if model.refiner is not None else None,
                    "clinical": None if vec is None else np.stack([vec, vec])})
    return out


def grid_rows(cases, extra: dict, fixed: dict | None = None) -> list[dict]:
    """Every post-processing setting of GRID (less the ``fixed`` ones) scored on ``cases``, with ``extra`` fields and
    the objective."""
    rows = []
    grid = {k: ((fixed[k],) if fixed and k in fixed else v) for k, v in GRID.items()}
    for values in itertools.product(*grid.values()):
        pp = MaskPostprocess(**dict(zip(grid, values)))
        r = {**extra, **pp.to_dict(), **score(cases, pp)}
        r["objective"] = (r["dice_mean_tumour"] + r["ap50"]) / 2
        rows.append(r)
    return rows


def network_part(case: dict) -> np.ndarray:
    """The case's probability map over the part of the image the network read (as the analysis refines it)."""
    x0, y0, x1, y1 = case["crop"]
    return case["prob"][y0:y1, x0:x1]


def with_network_part(case: dict, part: np.ndarray) -> np.ndarray:
    """The case's probability map with that part replaced."""
    x0, y0, x1, y1 = case["crop"]
    prob = case["prob"].copy()
    prob[y0:y1, x0:x1] = part
    return prob


def second_look_rows(model, cases, seed: MaskPostprocess, contexts, max_zoom: float, size: int, lesions=(1,),
                     network: str = "main") -> tuple[list[dict], dict]:
    """Grid rows of each (context, lesions, combine) second look on the first-look ``cases``, and the refined cases of each."""
    rows, refined_by = [], {}
    for k in contexts:
        for n in lesions:
            looks = []
            for c in cases:
                inner = network_part(c)
                views = lesion_views(inner, c["p_tumour"], seed, k, max_zoom, n) if c["label"] != "normal" else []
                looks.append((views, views_probability(model, c["refiner_seen" if network == "refiner" else "seen"], views,
                                                                inner.shape, c["clinical"], network)))
            n_looked = sum(bool(v[0]) for v in looks)
            for how in COMBINE:
                refined = [c if not v[0] else {**c, "prob": with_network_part(c, combine(network_part(c), v[0], v[1], how))}
                           for c, v in zip(cases, looks)]
                refined_by[(k, n, how)] = refined
                rows += grid_rows(refined, {"mask_input_size": size, "second_look": {
                    "context": k, "combine": how, "max_zoom": max_zoom, "seed": seed.to_dict(), "network": network,
                    "lesions": n}, "n_second_looks": n_looked}, look_fixed(seed))
    return rows, refined_by


def look_fixed(seed: MaskPostprocess) -> dict:
    """Settings a second look keeps from the first look's choice (the full grid would take 7 minutes a variant)."""
    return {"min_fraction": seed.min_fraction, "fill_holes": seed.fill_holes}


def look_key(look: dict) -> tuple:
    return look["context"], look.get("lesions", 1), look["combine"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_btxrd_options(ap)
    ap.add_argument("--write", default=None, help="folder for a copy of the model with the chosen post-processing")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    ap.add_argument("--mask-sizes", type=int, nargs="+", default=None,
                    help="mask input sizes to try (default: the model's size and 1.25 times it, multiples of 32)")
    ap.add_argument("--tag", default="", help="suffix of the results file (radiograph_postprocess_<tag>.json)")
    ap.add_argument("--second-look", type=float, nargs="*", default=[], metavar="K",
                    help="contexts (view side over lesion side) of a zoomed-in second look to try")
    ap.add_argument("--max-zoom", type=float, default=4.0, help="largest enlargement of the second look")
    ap.add_argument("--lesions", type=int, nargs="+", default=[1], help="numbers of top lesions the second look reads")
    ap.add_argument("--refiner", action="store_true", help="the second look reads the model's lesion refiner")
    ap.add_argument("--keep-first-look", action="store_true",
                    help="keep the model's mask input size and post-processing as the first look (no grid); "
                         "only the second looks are chosen")
    args = ap.parse_args()
    model = load_model(args.model)
    manifest = load_manifest(args.manifest)
    val_cases = cases_in_split(manifest, load_splits(args.splits), "val")
    calib = model.metadata["calibration"]
    current = MaskPostprocess.from_calibration(calib)
    current_size = int(calib.get("mask_input_size", model.image_size))
    sizes = [current_size] if args.keep_first_look else args.mask_sizes or [model.image_size, enlarged_size(model.image_size)]
    rows, baseline, by_size = [], None, {}
    calib = {k: v for k, v in calib.items() if k != "second_look"}  # the first look alone
    for size in sizes:
        sized = replace(model, metadata={**model.metadata, "calibration": {**calib, "mask_input_size": size}})
        cases = validation_cases(sized, manifest, val_cases)
        by_size[size] = cases
        if size == current_size:
            baseline = score(cases, current)
        rows += grid_rows(cases, {"mask_input_size": size, "second_look": None},
                          current.to_dict() if args.keep_first_look else None)
    rows.sort(key=lambda r: -r["objective"])
    first_look = rows[0]
    gain = None
    if args.second_look:
        size = first_look["mask_input_size"]
        seed = MaskPostprocess(**{k: first_look[k] for k in GRID})
        more, refined_by = second_look_rows(model, by_size[size], seed, args.second_look, args.max_zoom, size,
                                            args.lesions, "refiner" if args.refiner else "main")
        rows = sorted(rows + more, key=lambda r: -r["objective"])
        top = max(more, key=lambda r: r["objective"])
        gain = paired_gain(by_size[size], seed, refined_by[look_key(top["second_look"])],
                           MaskPostprocess(**{k: top[k] for k in GRID}))
        print(f"best second look (context {top['second_look']['context']:g}, {top['second_look']['lesions']} lesions, "
              f"{top['second_look']['combine']}, {top['second_look']['network']}) against the best first look, paired "
              f"over {gain['n_groups']} validation groups: Dice {gain['dice']}, AP50 {gain['ap50']}")
    best = rows[0]
    print(f"validation split: {len(cases)} images, {sum(c['truth'].any() for c in cases)} with a lesion")
    over_current = None
    if baseline:
        print(f"current (mask input {current_size} px, {current.to_dict()}): "
              f"Dice {baseline['dice_mean_tumour']:.3f}, AP50 {baseline['ap50']:.3f}")
        if not best["second_look"]:
            over_current = paired_gain(by_size[current_size], current, by_size[best["mask_input_size"]],
                                       MaskPostprocess(**{k: best[k] for k in GRID}))
            print(f"chosen against current, paired over {over_current['n_groups']} validation groups (chosen on these "
                  f"images, so optimistic): Dice {over_current['dice']}, AP50 {over_current['ap50']}")
    print(f"{'size':>5s} {'second look':>12s} {'threshold':>9s} {'closing':>7s} {'min_frac':>8s} {'fill':>5s} {'min_comp':>8s} "
          f"{'Dice':>6s} {'AP50':>6s}")
    for r in rows[:10]:
        look = f"{r['second_look']['context']:g}x{r['second_look']['lesions']} {r['second_look']['combine']}" if r["second_look"] else "-"
        print(f"{r['mask_input_size']:5d} {look:>12s} {r['threshold']:9.2f} {r['closing']:7.2f} {r['min_fraction']:8.2f} "
              f"{str(r['fill_holes']):>5s} {r['min_component']:8.4f} {r['dice_mean_tumour']:6.3f} {r['ap50']:6.3f}")
    chosen = {k: best[k] for k in GRID}
    if args.write:
        src, dst = resolve_model(args.model), Path(args.write)
        if dst.resolve() == src.resolve():
            raise SystemExit(f"--write {dst}: a new folder, not the model's own (it is replaced by the copy)")
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst)
        meta = json.loads((dst / "metadata.json").read_text())
        meta["calibration"] = drop_reading(meta["calibration"])  # its view may move: fit it again afterwards
        meta["calibration"]["mask_input_size"] = best["mask_input_size"]
        meta["calibration"]["mask_postprocess"] = chosen
        meta["calibration"]["mask_threshold"] = chosen["threshold"]
        meta["calibration"].pop("second_look", None)
        if best["second_look"]:
            meta["calibration"]["second_look"] = best["second_look"]
        meta["calibration"]["val_mask_postprocess"] = {"dice_mean_tumour": best["dice_mean_tumour"], "ap50": best["ap50"],
                                                       "chosen_on": "validation split", "mask_input_sizes": sizes,
                                                       "second_look_contexts": args.second_look,
                                                       "second_look_lesions": args.lesions if args.second_look else [],
                                                       "grid": {k: list(v) for k, v in GRID.items()}}
        (dst / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
        print(f"wrote {dst} with mask input {best['mask_input_size']} px, calibration.mask_postprocess = {chosen}"
              f" and second look {best['second_look']}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"model": model.name, "version": model.metadata["version"], "splits_file": args.splits, "split": "val",
              "n_images": len(cases), "current": {"mask_input_size": current_size, **current.to_dict(), **(baseline or {})},
              "mask_input_sizes": sizes, "chosen": {"mask_input_size": best["mask_input_size"], **chosen,
                                                    "second_look": best["second_look"]},
              "chosen_scores": {k: best[k] for k in ("dice_mean_tumour", "ap50")},
              "best_per_size": [next(r for r in rows if r["mask_input_size"] == size and not r["second_look"]) for size in sizes],
              "best_first_look": first_look, "second_look_gain": gain, "chosen_over_current": over_current,
              "best_per_second_look": [next(r for r in rows if r["second_look"] and look_key(r["second_look"]) == key)
                                       for key in refined_by] if args.second_look else [],
              "top": rows[:20]}
    name = f"radiograph_postprocess{'_' + args.tag if args.tag else ''}.json"
    (out / name).write_text(json.dumps(record, indent=2, default=str))


if __name__ == "__main__":
    main()
