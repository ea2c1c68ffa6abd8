"""The effect of a recipe change measured over seeds: mean of the paired differences, one shared group bootstrap.

A sweep trains arms ``A_s0, A_s1, ...`` and ``B_s0, B_s1, ...`` (the same seeds); ``benchmarks/device/per_case.py``
saves every run's per-case results. For each metric this prints both arms' means over seeds, the mean over seed
pairs of ``B_sK - A_sK`` with a 95% interval from 2,000 resamples of patient groups shared by every run (so seed
noise and case sampling are both in it), each pair's difference, and, exploratory, the same comparison between the
arms' seed ensembles (class probabilities averaged over the seeds, each run calibrated on its own), and what
each arm's ensemble gains over the mean of its own seeds.

Usage:
    python benchmarks/seed_pairs.py work/gpu_stop34/cases.npz --sweep centre_transfer_2 --split test \\
        --arms base zoom25 --tag zoom_centre_external

Writes benchmarks/results/seed_pairs_<tag>.json.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from compare_runs import metric_values
from osteolens.evaluation.bootstrap import group_bootstrap_weights, percentile_ci
from osteolens.evaluation.calibration import expected_calibration_error
from osteolens.evaluation.classification import multiclass_accuracy, roc_auc

REPO = Path(__file__).resolve().parents[1]
FIELDS = ("case_ids", "groups", "labels", "probs", "dice", "pointing_game")
CLASS_METRICS = ("macro_auc", "auc_tumour", "auc_malignant", "auc_benign", "ece", "accuracy")
METRICS = CLASS_METRICS + ("dice", "pointing_game")


def load_runs(path: Path, sweep: str, split: str) -> dict[str, dict]:
    """Every run of ``sweep`` in a per-case file, as ``{run: {field: array}}``."""
    z = np.load(path)
    runs = sorted({k.split("/")[1] for k in z.files if k.startswith(f"{sweep}/") and f"/{split}/" in k})
    if not runs:
        raise SystemExit(f"{path}: no runs of sweep {sweep!r} on split {split!r}")
    return {r: {f: z[f"{sweep}/{r}/{split}/{f}"] for f in FIELDS} for r in runs}


def metrics(cases: dict, weights=None) -> dict:
    """:func:`compare_runs.metric_values` plus benign-vs-rest AUC, top-label ECE and argmax accuracy."""
    y, p = cases["labels"], cases["probs"]
    out = metric_values(cases, weights)
    out["auc_benign"] = roc_auc(y == 1, p[:, 1], weights)
    out["ece"] = expected_calibration_error(y, p, weights)
    out["accuracy"] = multiclass_accuracy(y, p.argmax(1), weights)
    return {k: np.asarray(v, float) for k, v in out.items()}


def seed_pairs(runs: dict[str, dict], arm_a: str, arm_b: str, n_boot: int = 2000, seed: int = 0) -> dict:
    """Mean-of-pairs effect of ``arm_b`` over ``arm_a`` for every metric, and the seed ensembles' difference."""
    seeds = sorted({int(m.group(1)) for r in runs if (m := re.fullmatch(rf"{arm_a}_s(\d+)", r))}
                   & {int(m.group(1)) for r in runs if (m := re.fullmatch(rf"{arm_b}_s(\d+)", r))})
    if not seeds:
        raise SystemExit(f"no seed run in both arms {arm_a!r} and {arm_b!r} (runs: {sorted(runs)})")
    a = [runs[f"{arm_a}_s{s}"] for s in seeds]
    b = [runs[f"{arm_b}_s{s}"] for s in seeds]
    for c in a + b:
        if not np.array_equal(c["case_ids"], a[0]["case_ids"]):
            raise SystemExit("the runs were scored on different cases; pairs need the same ones")
    w = group_bootstrap_weights(a[0]["groups"], n_boot, seed)
    pa, pb = [metrics(c) for c in a], [metrics(c) for c in b]
    ba, bb = [metrics(c, w) for c in a], [metrics(c, w) for c in b]
    ens = [{**arm[0], "probs": np.mean([c["probs"] for c in arm], 0)} for arm in (a, b)]
    ea, eb = metrics(ens[0]), metrics(ens[1])
    ewa, ewb = metrics(ens[0], w), metrics(ens[1], w)
    out = {"seeds": seeds, "n_images": int(len(a[0]["labels"])), "n_groups": int(len(np.unique(a[0]["groups"]))),
           "n_boot": n_boot, "metrics": {}}
    for k in METRICS:
        diffs = np.mean([bb[i][k] - ba[i][k] for i in range(len(seeds))], 0)
        lo, hi = percentile_ci(diffs)
        row = {f"{arm_a}_mean": float(np.mean([m[k] for m in pa])), f"{arm_b}_mean": float(np.mean([m[k] for m in pb])),
               "mean_of_pairs": float(np.mean([pb[i][k] - pa[i][k] for i in range(len(seeds))])),
               "ci_low": lo, "ci_high": hi, "pairs": [float(pb[i][k] - pa[i][k]) for i in range(len(seeds))]}
        if k in CLASS_METRICS:
            elo, ehi = percentile_ci(ewb[k] - ewa[k])
            row.update({f"ensemble_{arm_a}": float(ea[k]), f"ensemble_{arm_b}": float(eb[k]),
                        "ensemble_difference": float(eb[k] - ea[k]), "ensemble_ci": [elo, ehi]})
            for name, e, ew, p, bt in ((arm_a, ea, ewa, pa, ba), (arm_b, eb, ewb, pb, bb)):  # ensemble over its seeds
                glo, ghi = percentile_ci(ew[k] - np.mean([m[k] for m in bt], 0))
                row[f"ensemble_gain_{name}"] = [float(e[k] - np.mean([m[k] for m in p])), glo, ghi]
        out["metrics"][k] = {key: (round(v, 4) if isinstance(v, float) else [round(x, 4) for x in v])
                             for key, v in row.items()}
    return out


def print_table(result: dict, arm_a: str, arm_b: str) -> None:
    print(f"{result['n_images']} images, {result['n_groups']} groups, seeds {result['seeds']}")
    print(f"{'metric':<15}{arm_a:>9}{arm_b:>9}   {'mean of pairs (95% CI)':<29}{'pairs':<26}ensembles, difference (95% CI)")
    for k, r in result["metrics"].items():
        ens = ""
        if "ensemble_ci" in r:
            ens = (f"{r[f'ensemble_{arm_a}']:.3f} / {r[f'ensemble_{arm_b}']:.3f}, {r['ensemble_difference']:+.3f} "
                   f"({r['ensemble_ci'][0]:+.3f} to {r['ensemble_ci'][1]:+.3f})")
            ens += "".join(f"; {a} ensemble vs its seeds {r[f'ensemble_gain_{a}'][0]:+.3f} "
                           f"({r[f'ensemble_gain_{a}'][1]:+.3f} to {r[f'ensemble_gain_{a}'][2]:+.3f})" for a in (arm_a, arm_b))
        print(f"{k:<15}{r[f'{arm_a}_mean']:>9.3f}{r[f'{arm_b}_mean']:>9.3f}   {r['mean_of_pairs']:+.3f} "
              f"({r['ci_low']:+.3f} to {r['ci_high']:+.3f})     " + " ".join(f"{x:+.3f}" for x in r["pairs"]).ljust(26) + ens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", type=Path, help="per-case file of benchmarks/device/per_case.py")
    ap.add_argument("--sweep", required=True)
    ap.add_argument("--split", default="val", choices=("val", "test"))
    ap.add_argument("--arms", nargs=2, required=True, metavar=("A", "B"), help="the reference arm, then the change")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--tag", required=True)
    args = ap.parse_args()
    result = {"cases": str(args.cases), "sweep": args.sweep, "split": args.split, "arms": args.arms,
              **seed_pairs(load_runs(args.cases, args.sweep, args.split), *args.arms, args.n_boot)}
    print_table(result, *args.arms)
    out = REPO / "benchmarks" / "results" / f"seed_pairs_{args.tag}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
