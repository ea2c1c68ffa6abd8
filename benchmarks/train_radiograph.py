"""The recipe of the shipped radiograph model, timed: import, split, train, export.

Runs on the CPU (2 threads by default) and reports the wall-clock training time against the
60-minute budget of issue 3. The default model uses the patient-grouped 70/10/20 split (seed 0);
``--centre`` trains the external-validation model on centre 1 only (tested on centres 2 and 3).

Usage:
    python benchmarks/train_radiograph.py --tag default                 # -> work/runs/default, work/models/default
    python benchmarks/train_radiograph.py --tag centre1 --centre        # train on centre 1
    python benchmarks/train_radiograph.py --tag noclinical --no-clinical  # image-only ablation

Writes benchmarks/results/train_radiograph_<tag>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from osteolens.data.importers import import_btxrd
from osteolens.data.splits import split_manifest
from osteolens.models.export import export_run
from osteolens.training.config import load_config
from osteolens.training.trainer import train

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "btxrd256"))
    ap.add_argument("--config", default=str(REPO / "configs" / "radiograph_default.json"))
    ap.add_argument("--tag", default="default")
    ap.add_argument("--centre", action="store_true", help="train on centre 1, hold out centres 2 and 3")
    ap.add_argument("--no-clinical", action="store_true", help="image-only model (clinical fusion ablation)")
    ap.add_argument("--work", default=str(REPO / "work"))
    ap.add_argument("--version", default="1.0.0", help="version written into the exported model's metadata")
    args = ap.parse_args()
    work = Path(args.work)
    manifest = work / "btxrd" / "manifest.csv"
    if not manifest.is_file():
        import_btxrd(args.data, work / "btxrd")
    splits = work / "btxrd" / ("splits_centre1.csv" if args.centre else "splits.csv")
    if not splits.is_file():
        split_manifest(manifest, seed=0, hold_out_centre="2,3" if args.centre else None).save(splits)
    cfg = load_config(args.config).model_copy(update={"manifest": manifest.resolve(), "splits": splits.resolve(),
                                                       "clinical": not args.no_clinical})
    t0 = time.perf_counter()
    summary = train(cfg, work / "runs" / args.tag, show_progress=False)
    minutes = (time.perf_counter() - t0) / 60
    name = "osteolens-radiograph" if args.tag == "default" else f"osteolens-radiograph-{args.tag}"
    meta = export_run(work / "runs" / args.tag, work / "models" / args.tag, name=name, version=args.version)
    result = {"tag": args.tag, "threads": cfg.threads, "cpu_count": os.cpu_count(), "train_minutes_wall": round(minutes, 1),
              "budget_minutes": 60, "epochs_run": summary["epochs_run"], "best_epoch": summary["best_epoch"],
              "stop_reason": summary["stop_reason"], "best_val": summary["best_val"], "calibration": summary["calibration"],
              "model_sha256": meta["sha256"], "clinical": cfg.clinical, "splits": str(splits),
              "config": str(args.config), "image_size": cfg.image_size, "precision": summary["precision"],
              "cpu_capability": summary["cpu_capability"]}
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"train_radiograph_{args.tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.tag}: trained in {minutes:.1f} min on {cfg.threads} threads (budget 60), {summary['epochs_run']} epochs, "
          f"best {summary['best_epoch']}; val macro AUC {summary['best_val']['val_macro_auc']:.3f}, Dice {summary['best_val']['val_dice']:.3f}")


if __name__ == "__main__":
    main()
