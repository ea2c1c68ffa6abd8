"""IBSI-1 compliance of osteolens radiomics: the digital phantom and the CT phantom, configurations A-E.

Usage: python benchmarks/ibsi_compliance.py [--ibsi ../shared/data/ibsi] [--workers 2]
Prints, per data set and feature family, how many reference values are matched within
tolerance (README rule: digital-phantom values rounded to 3 significant digits), the same count
with every tolerance-0 row rounded, every miss, and the extraction time per data set and in
total (wall clock, including the engine's import in each worker).
Writes benchmarks/results/ibsi_compliance.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from osteolens.radiomics.compliance import run_ibsi, score, summary

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ibsi", default=str(REPO.parent / "shared" / "data" / "ibsi"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = ap.parse_args()
    start = time.perf_counter()
    scored, seconds = run_ibsi(args.ibsi, workers=args.workers)
    wall = time.perf_counter() - start
    loose = score(scored.drop(columns=["computed", "match", "reason"]), scored.attrs["computed"], "tolerance-zero")
    table = summary(scored)
    print(f"{'data set':14s} {'family':44s} {'matched':>8s} {'rows':>5s}")
    for r in table.itertuples():
        print(f"{r.data_set:14s} {r.family:44s} {r.matched:8d} {r.rows:5d}")
    per_set = scored.groupby("data_set")["match"].agg(["sum", "size"])
    print()
    print(f"{'data set':14s} {'matched':>8s} {'rows':>5s} {'extraction s':>13s}")
    for ds, r in per_set.iterrows():
        print(f"{ds:14s} {int(r['sum']):8d} {int(r['size']):5d} {seconds[ds]:13.1f}")
    n, total = int(scored.match.sum()), len(scored)
    print(f"\nall: {n}/{total} = {100 * n / total:.2f}% (README rule); {int(loose.match.sum())}/{total} with every "
          f"tolerance-0 row rounded to 3 significant digits")
    print(f"time: {wall:.1f} s wall for the six data sets with {args.workers} worker(s) "
          f"(sum of per-data-set extraction {sum(seconds.values()):.1f} s)")
    misses = scored[~scored.match]
    for r in misses.itertuples():
        print(f"miss: {r.data_set} {r.osteolens_feature} [{r.aggregation}] reference {r.value:g}, computed {r.computed}: {r.reason}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "matched": n, "rows": total, "percent": round(100 * n / total, 3),
        "matched_rounding_every_tolerance_zero_row": int(loose.match.sum()),
        "wall_seconds": round(wall, 2), "workers": args.workers,
        "extraction_seconds": {k: round(v, 2) for k, v in seconds.items()},
        "per_family": [dict(data_set=r.data_set, family=r.family, matched=int(r.matched), rows=int(r.rows)) for r in table.itertuples()],
        "misses": [dict(data_set=r.data_set, feature=r.osteolens_feature, aggregation=r.aggregation, reference=r.value,
                        computed=r.computed, reason=r.reason) for r in misses.itertuples()],
    }
    (out / "ibsi_compliance.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
