"""How long `osteolens evaluate` takes: 3,000+ real BTXRD cases, 2,000 group-bootstrap resamples.

Target (issue 2): under 10 s on 2 cores. The predictions are simulated (a fixed-noise score per
class) because only the evaluation's speed is measured here; truth, groups and masks are real.

Usage: python benchmarks/evaluation_speed.py [--data ../shared/data/btxrd256] [--out benchmarks/results]
Prints a table and writes evaluation_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from osteolens import __version__
from osteolens.data.importers import import_btxrd
from osteolens.evaluation.report import evaluate

REPO = Path(__file__).resolve().parents[1]


def simulated_predictions(manifest: Path, out: Path, with_masks: bool) -> Path:
    from osteolens.data.manifest import load_manifest

    f = load_manifest(manifest).to_frame()
    rng = np.random.default_rng(0)
    y = f["label"].map({"normal": 0, "benign": 1, "malignant": 2}).to_numpy()
    logits = rng.normal(size=(len(f), 3))
    logits[np.arange(len(f)), y] += 2
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    table = pd.DataFrame({"case_id": f["case_id"], "p_normal": p[:, 0], "p_benign": p[:, 1], "p_malignant": p[:, 2]})
    if with_masks:
        table["mask"] = [str((manifest.parent / m).resolve()) for m in f["mask"]]
    path = out / f"pred_{'masks' if with_masks else 'cls'}.csv"
    table.to_csv(path, index=False)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "btxrd256"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    ap.add_argument("--n-boot", type=int, default=2000)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest = import_btxrd(args.data, tmp / "m").manifest_path
        for label, with_masks, stratify in (
            ("classification + calibration", False, False),
            ("classification + strata (6 variables)", False, True),
            ("all: + segmentation + detection (masks read from disk)", True, True),
        ):
            pred = simulated_predictions(manifest, tmp, with_masks)
            t0 = time.perf_counter()
            m = evaluate(pred, manifest, tmp / "res", n_boot=args.n_boot, seed=0, stratify=stratify, plots=True)
            rows.append({"what": label, "n_cases": m["n_cases"], "n_boot": args.n_boot, "seconds": round(time.perf_counter() - t0, 2)})
    result = {
        "benchmark": "evaluation_speed", "osteolens": __version__, "cpu_count": os.cpu_count(),
        "machine": platform.platform(), "target_seconds": 10.0, "rows": rows,
    }
    print(f"{'what':58s} {'cases':>6s} {'boot':>6s} {'seconds':>8s}")
    for r in rows:
        print(f"{r['what']:58s} {r['n_cases']:6d} {r['n_boot']:6d} {r['seconds']:8.2f}")
    (out / "evaluation_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out / 'evaluation_speed.json'}")


if __name__ == "__main__":
    main()
