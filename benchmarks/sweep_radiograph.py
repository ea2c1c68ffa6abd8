"""Variants of the radiograph recipe trained side by side, then compared on the validation split.

A plan (JSON) names the variants as changes to ``configs/radiograph_default.json``::

    {"train_seconds": 430, "base": {"epochs": 16, "lr": 0.001},
     "runs": {"base_s0": {}, "lr3_s0": {"lr": 0.003}, "lr3_s1": {"lr": 0.003, "seed": 1}}}

``base`` changes every run; each run's entry changes it further. Pin in ``base`` whatever the
comparison depends on, so that the plan reproduces after the default config moves on.

Every run trains in its own process at the same time (one GPU holds a dozen of these small
runs; on a CPU give one or two). Runs still going after ``train_seconds`` are stopped and left
out. The finished runs are then compared with ``compare_runs`` (paired group bootstrap against
the first run; never the test split), and the figures of each run and of each variant (runs
whose names differ only in a ``_sN`` seed suffix, as mean and range) are printed.

Usage:
    python benchmarks/sweep_radiograph.py benchmarks/plans/lr_sweep_1.json --tag lr1 --device cuda
    python benchmarks/sweep_radiograph.py --summarise benchmarks/results/sweep_radiograph_lr*.json

Writes work/sweeps/<tag>/ (configs, logs, run folders, result.json) and benchmarks/results/sweep_radiograph_<tag>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from compare_runs import compare, print_table

REPO = Path(__file__).resolve().parents[1]
FIGURES = ("val_macro_auc", "val_auc_tumour", "val_auc_malignant", "val_dice", "ece_after",
           "val_malignant_specificity")


def run_plan(plan: dict, root: Path, manifest: Path, splits: Path, device: str) -> list[str]:
    """Train every run of ``plan`` in parallel under ``root``; the names of those that finished."""
    from osteolens.errors import OsteolensError
    from osteolens.training.config import TrainConfig, validate_config, with_changes

    base = json.loads((REPO / "configs" / "radiograph_default.json").read_text())
    base.update({"manifest": str(manifest.resolve()), "splits": str(splits.resolve()), "device": device,
                 "threads": 1, "max_minutes": 1000})
    base = with_changes(base, plan.get("base", {}))
    (root / "configs").mkdir(parents=True, exist_ok=True)

    configs = {name: with_changes(base, change) for name, change in plan["runs"].items()}
    for name, cfg in configs.items():  # every run checked before any starts: a typo fails here, not an hour in
        try:
            validate_config(cfg, f"plan run {name!r}")
        except OsteolensError as exc:
            raise SystemExit(str(exc)) from exc
    for crop in {cfg.get("crop_uniform_border") for cfg in configs.values()}:
        TrainConfig(**{**base, "crop_uniform_border": crop}).cached()  # each cache built once, before the runs share it
    procs = {}
    for name, cfg in configs.items():
        path = root / "configs" / f"{name}.json"
        path.write_text(json.dumps(cfg, indent=2) + "\n")
        code = ("from osteolens.training.config import load_config; from osteolens.training.trainer import train; "
                f"train(load_config({str(path)!r}), {str(root / 'runs' / name)!r}, show_progress=False)")
        with open(root / f"{name}.log", "w") as log:
            procs[name] = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT,
                                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + plan.get("train_seconds", 3600)
    while any(p.poll() is None for p in procs.values()) and time.time() < deadline:
        time.sleep(5)
    for name, p in procs.items():
        if p.poll() is None:
            p.kill()
            print(f"{name}: stopped at the plan's {plan['train_seconds']} s, left out")
        elif p.returncode:
            print(f"{name}: failed, see {root / (name + '.log')}")
    return [n for n in plan["runs"] if (root / "runs" / n / "calibration.json").is_file()]


def collect(root: Path, names: list[str], comparison: dict | None) -> dict:
    """Each finished run's calibrated validation figures and training time, plus the paired comparison."""
    runs = {}
    for name in names:
        summary = json.loads((root / "runs" / name / "summary.json").read_text())
        config = json.loads((root / "configs" / f"{name}.json").read_text())
        cal = summary["calibration"]
        runs[name] = {"figures": {k: cal[k] for k in FIGURES}, "epochs_run": summary["epochs_run"],
                      "best_epoch": summary["best_epoch"], "train_minutes": summary["train_minutes"],
                      "device": summary.get("device", "cpu"), "torch": summary["torch"],
                      "config_changes": {k: v for k, v in config.items() if k not in ("manifest", "splits")}}
    return {"split": "validation (patient-grouped; the test split is never read)", "runs": runs,
            "paired": comparison}


def by_variant(results: list[dict]) -> dict:
    """Runs grouped by name without the ``_sN`` seed suffix: n, mean and range of each figure."""
    groups: dict[str, list[dict]] = {}
    for res in results:
        for name, run in res["runs"].items():
            groups.setdefault(re.sub(r"_s\d+$", "", name), []).append(run["figures"])
    return {v: {"n": len(rows), **{k: {"mean": round(float(np.mean([r[k] for r in rows])), 4),
                                       "min": round(float(np.min([r[k] for r in rows])), 4),
                                       "max": round(float(np.max([r[k] for r in rows])), 4)} for k in FIGURES}}
            for v, rows in groups.items()}


def print_variants(variants: dict) -> None:
    print(f"{'variant':<12}{'n':>3}" + "".join(f"{k.replace('val_', ''):>24}" for k in FIGURES))
    for v, row in variants.items():
        cells = "".join(f"{row[k]['mean']:>9.3f} ({row[k]['min']:.3f}-{row[k]['max']:.3f})" for k in FIGURES)
        print(f"{v:<12}{row['n']:>3}{cells}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("plan", nargs="?", type=Path)
    ap.add_argument("--tag", default="sweep")
    ap.add_argument("--manifest", type=Path, default=REPO / "work" / "btxrd" / "manifest.csv")
    ap.add_argument("--splits", type=Path, default=REPO / "work" / "btxrd" / "splits.csv")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--summarise", nargs="+", type=Path, help="result files of earlier sweeps: print their variants")
    args = ap.parse_args()
    if args.summarise:
        print_variants(by_variant([json.loads(p.read_text()) for p in args.summarise]))
        return
    if args.plan is None:
        ap.error("give a plan, or --summarise RESULT...")
    plan = json.loads(args.plan.read_text())
    root = REPO / "work" / "sweeps" / args.tag
    names = run_plan(plan, root, args.manifest, args.splits, args.device)
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    comparison = compare([root / "runs" / n for n in names], device=args.device) if len(names) > 1 else None
    if comparison:
        print_table(comparison)
    result = {"plan": str(args.plan), **collect(root, names, comparison)}
    print_variants(by_variant([result]))
    out = REPO / "benchmarks" / "results" / f"sweep_radiograph_{args.tag}.json"
    text = json.dumps(result, indent=2) + "\n"
    out.write_text(text)
    (root / "result.json").write_text(text)  # beside the runs too: work/ is kept where a copy of the tree is synced
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
