"""Does clinical context help? Late fusion of the image model with age, sex, region and view.

The image model's test-time outputs (``osteolens analyze``) on the validation split train a
multinomial logistic regression on [log p(normal), log p(benign), log p(malignant)] alone and
with the clinical vector (age, age^2, sex, region, view; not the site, which in BTXRD is
annotated only for tumours and would leak the label); both are then scored on the test split,
with bootstrap CIs over patient groups, next to a clinical-only model.

Usage: python benchmarks/clinical_fusion.py [--model osteolens-radiograph]
Writes benchmarks/results/clinical_fusion.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from osteolens.clinical.fusion import FusionModel, clinical_design, log_probs
from osteolens.data.clinical import clinical_table
from osteolens.data.manifest import LABELS, load_manifest
from osteolens.data.splits import load_splits
from osteolens.evaluation.bootstrap import bootstrap_metric, group_bootstrap_weights
from osteolens.evaluation.classification import macro_auc, roc_auc
from osteolens.inference.analyze import analyze

from btxrd_options import add_btxrd_options

REPO = Path(__file__).resolve().parents[1]


def outputs(model, manifest, ids, folder):
    cases = [c for c in manifest.cases if c.case_id in ids]
    clinical = clinical_table(cases)
    folder.mkdir(parents=True, exist_ok=True)
    clinical.to_csv(folder / "clinical.csv", index=False)
    results = analyze([manifest.resolve(c.image) for c in cases], folder / "analysis", model=model,
                      clinical_csv=folder / "clinical.csv", overlays=False)
    ok = [(c, r) for c, r in zip(cases, results) if r.status == "ok"]
    y = np.array([LABELS.index(c.label) for c, _ in ok])
    logp = log_probs([[r.p_normal, r.p_benign, r.p_malignant] for _, r in ok])
    clin = clinical_design([c.model_dump() for c, _ in ok])
    return y, logp, clin, np.array([c.group_id for c, _ in ok])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_btxrd_options(ap)
    args = ap.parse_args()
    manifest = load_manifest(args.manifest)
    splits = load_splits(args.splits)
    work = REPO / "work" / "bench" / "clinical_fusion"
    yv, lv, cv, _ = outputs(args.model, manifest, set(splits.loc[splits.split == "val", "case_id"]), work / "val")
    yt, lt, ct, gt = outputs(args.model, manifest, set(splits.loc[splits.split == "test", "case_id"]), work / "test")
    W = group_bootstrap_weights(gt, 2000, 0)
    rows = {}
    zeros_v, zeros_t = np.zeros((len(yv), 0)), np.zeros((len(yt), 0))
    for name, (iv, cvv, it, ctt) in (("image only", (lv, None, lt, None)),
                                     ("image + age, sex, region, view", (lv, cv, lt, ct)),
                                     ("clinical only", (zeros_v, cv, zeros_t, ct))):
        model = FusionModel.fit(iv, cvv, yv)
        p = model.predict_proba(it, ctt)
        if name == "image + age, sex, region, view":
            model.save(REPO / "work" / "bench" / "clinical_fusion" / "fusion_model.json")
        rows[name] = {
            "macro_auc": bootstrap_metric(macro_auc, (yt, p), weights=W).to_dict(),
            "auc_malignant": bootstrap_metric(roc_auc, (yt == 2, p[:, 2]), weights=W).to_dict(),
            "auc_tumour_vs_normal": bootstrap_metric(roc_auc, (yt > 0, p[:, 1] + p[:, 2]), weights=W).to_dict(),
        }
    print(f"late fusion fitted on validation ({len(yv)} images), scored on test ({len(yt)} images); 95% CIs over patient groups")
    print(f"{'inputs':34s} {'macro AUC':>22s} {'malignant AUC':>22s} {'tumour AUC':>22s}")
    for name, r in rows.items():
        cells = [f"{r[k]['value']:.3f} ({r[k]['ci_low']:.3f}-{r[k]['ci_high']:.3f})" for k in ("macro_auc", "auc_malignant", "auc_tumour_vs_normal")]
        print(f"{name:34s} " + " ".join(f"{c:>22s}" for c in cells))
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "clinical_fusion.json").write_text(json.dumps({"model": str(args.model), "n_val": len(yv), "n_test": len(yt), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
