"""Radiomics benign-vs-malignant models on BTXRD tumour radiographs, against the deep model.

Usage: python benchmarks/radiomics_models.py [--manifest work/btxrd/manifest.csv]
          [--splits work/btxrd/splits.csv] [--features work/radiomics/btxrd_features.csv]

1. IBSI features of every tumour image with its expert mask (``osteolens radiomics extract
   --manifest ... --labels benign,malignant``; computed here when the CSV is missing).
2. Patient-grouped 5-fold CV over all tumour images: logistic regression (C by inner grouped
   CV) and gradient boosting, each with and without age/sex/site, plus clinical variables
   alone; AUC, sensitivity and specificity (balanced models, threshold 0.5) with 95%
   group-bootstrap CIs.
3. Held-out comparison on the same cases: models fitted on the train+validation split's tumour
   images, scored on the test split's tumour images, against the shipped deep model
   (P(malignant) / (P(benign) + P(malignant)) from ``osteolens analyze`` with clinical data);
   DeLong test per pair.
4. Feature-importance plots (docs/images/radiomics_importance_*.png).
Writes benchmarks/results/radiomics_models.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from osteolens.data.clinical import clinical_table
from osteolens.data.manifest import load_manifest
from osteolens.data.splits import load_splits
from osteolens.evaluation.bootstrap import bootstrap_metric, group_bootstrap_weights
from osteolens.evaluation.classification import roc_auc, sensitivity, specificity
from osteolens.evaluation.delong import delong_test
from osteolens.radiomics.model import (clinical_matrix, cross_validated_probabilities, feature_matrix, fit_model,
                                       importance, plot_importance)

REPO = Path(__file__).resolve().parents[1]


def figures(y, p, groups, n_boot=2000) -> dict:
    w = group_bootstrap_weights(groups, n_boot, 0)
    decided = p >= 0.5
    return {"auc": bootstrap_metric(roc_auc, (y, p), weights=w).to_dict(),
            "sensitivity": bootstrap_metric(sensitivity, (y, decided), weights=w).to_dict(),
            "specificity": bootstrap_metric(specificity, (y, decided), weights=w).to_dict()}


def fmt(m: dict) -> str:
    return f"{m['value']:.3f} ({m['ci_low']:.3f}-{m['ci_high']:.3f})"


def deep_scores(manifest, cases, work: Path, model_name: str) -> np.ndarray:
    from osteolens.inference.analyze import analyze
    from osteolens.models.registry import load_model

    work.mkdir(parents=True, exist_ok=True)
    clinical_table(cases).to_csv(work / "clinical.csv", index=False)
    results = analyze([manifest.resolve(c.image) for c in cases], work / "analysis", model=load_model(model_name),
                      clinical_csv=work / "clinical.csv", overlays=False)
    by_name = {r.image: r for r in results}
    out = []
    for c in cases:
        r = by_name[Path(c.image).name]
        if r.status != "ok":
            raise RuntimeError(f"deep model failed on {c.image}: {r.error}")
        out.append(r.p_malignant / (r.p_benign + r.p_malignant))
    return np.array(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", default=str(REPO / "work" / "btxrd" / "manifest.csv"))
    ap.add_argument("--splits", default=str(REPO / "work" / "btxrd" / "splits.csv"))
    ap.add_argument("--features", default=str(REPO / "work" / "radiomics" / "btxrd_features.csv"))
    ap.add_argument("--deep-model", default="osteolens-radiograph")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = ap.parse_args()
    manifest = load_manifest(args.manifest)
    if not Path(args.features).is_file():
        from osteolens.radiomics.batch import extract_manifest_to_csv
        from osteolens.radiomics.settings import preset

        extract_manifest_to_csv(args.manifest, args.features, preset("radiograph"), workers=2, labels=["benign", "malignant"])
    feats = pd.read_csv(args.features)
    feats = feats[feats.status == "ok"].reset_index(drop=True)
    meta = manifest.to_frame().set_index("case_id")
    frame = meta.loc[feats.case_id].reset_index()
    y = (frame["label"] == "malignant").to_numpy(int)
    groups = frame["group_id"].to_numpy()
    x_rad, rad_names = feature_matrix(feats)
    x_cli, cli_names = clinical_matrix(frame)
    inputs = {"radiomics": (x_rad, rad_names), "radiomics + clinical": (np.hstack([x_rad, x_cli]), rad_names + cli_names),
              "clinical only": (x_cli, cli_names)}
    print(f"{len(y)} tumour images ({y.sum()} malignant), {len(set(groups))} patient groups, {x_rad.shape[1]} radiomics features")

    # 1. grouped cross-validation over all tumour images
    cv = {}
    start = time.perf_counter()
    for kind in ("logistic", "boosting"):
        for name, (x, _) in inputs.items():
            if name == "clinical only" and kind == "boosting":
                continue
            p = cross_validated_probabilities(x, y, groups, kind)
            cv[f"{kind} | {name}"] = figures(y, p, groups)
    print(f"\npatient-grouped 5-fold CV ({time.perf_counter() - start:.0f} s), benign vs malignant")
    print(f"{'model':42s} {'AUC (95% CI)':>22s} {'sensitivity':>22s} {'specificity':>22s}")
    for k, m in cv.items():
        print(f"{k:42s} {fmt(m['auc']):>22s} {fmt(m['sensitivity']):>22s} {fmt(m['specificity']):>22s}")

    # 2. held-out test split: radiomics models vs the deep model on the same images
    splits = load_splits(args.splits).set_index("case_id")["split"]
    split = frame["case_id"].map(splits).to_numpy()
    train, test = np.isin(split, ["train", "val"]), split == "test"
    test_cases = [manifest.by_id()[c] for c in frame.loc[test, "case_id"]]
    deep = deep_scores(manifest, test_cases, REPO / "work" / "bench" / "radiomics_vs_deep", args.deep_model)
    held = {"deep model (image + age/sex/region/view)": deep}
    fitted = {}
    for kind in ("logistic", "boosting"):
        for name in ("radiomics", "radiomics + clinical"):
            x, names = inputs[name]
            model = fit_model(kind, x[train], y[train], groups[train])
            fitted[(kind, name)] = (model, names)
            held[f"{kind} | {name}"] = model.predict_proba(x[test])[:, 1]
    yt, gt = y[test], groups[test]
    print(f"\nheld-out test split: {test.sum()} tumour images ({yt.sum()} malignant), {len(set(gt))} groups")
    held_figs = {k: figures(yt, p, gt) for k, p in held.items()}
    for k, m in held_figs.items():
        print(f"{k:42s} {fmt(m['auc']):>22s} {fmt(m['sensitivity']):>22s} {fmt(m['specificity']):>22s}")
    tests = {}
    for k, p in held.items():
        if k.startswith("deep"):
            continue
        d = delong_test(yt, p, deep)
        tests[k] = {key: round(float(d[key]), 4) for key in ("auc_a", "auc_b", "difference", "ci_low", "ci_high", "p_value")}
        print(f"DeLong {k} minus deep: {d['difference']:+.3f} ({d['ci_low']:+.3f} to {d['ci_high']:+.3f}), p = {d['p_value']:.3g}")

    # 3. importance plots a clinician can read
    images = REPO / "docs" / "images"
    images.mkdir(parents=True, exist_ok=True)
    top = {}
    for kind in ("logistic", "boosting"):
        model, names = fitted[(kind, "radiomics + clinical")]
        x = inputs["radiomics + clinical"][0]
        data = (x[train], y[train]) if kind == "logistic" else (x[test], yt)
        table = importance(model, kind, *data, names)
        plot_importance(table, images / f"radiomics_importance_{kind}.png",
                        f"Benign vs malignant (BTXRD), {kind}:\nradiomics + age, sex, site")
        top[kind] = table.head(15).to_dict(orient="records")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"n_cases": int(len(y)), "n_malignant": int(y.sum()), "n_groups": int(len(set(groups))),
              "n_radiomics_features": int(x_rad.shape[1]), "features_csv": str(args.features),
              "cross_validation": cv, "held_out": {"n_cases": int(test.sum()), "n_malignant": int(yt.sum()),
                                                   "figures": held_figs, "delong_vs_deep": tests},
              "top_features": top, "note": "threshold 0.5 on class-balanced models; radiomics use the expert masks"}
    (out / "radiomics_models.json").write_text(json.dumps(result, indent=2, default=float))
    print(f"wrote {out / 'radiomics_models.json'} and docs/images/radiomics_importance_*.png")


if __name__ == "__main__":
    main()
