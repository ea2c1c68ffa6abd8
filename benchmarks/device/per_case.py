"""Per-case results of every finished sweep run, in one .npz to fetch from a lent GPU.

For each run under ``work/sweeps/*/runs/``: its validation cases and, for the sweeps named with
``--test``, its test cases (for a centre split, the held-out centres: arms fixed in advance are
scored there, never chosen there), as :func:`compare_runs.validation_cases` computes them. Keys are
``<sweep>/<run>/<split>/<field>``.

Usage:
    python3 benchmarks/device/per_case.py $OUT/cases.npz --test centre_transfer_2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from compare_runs import validation_cases  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--test", nargs="*", default=[], help="sweeps whose runs are also scored on their test split")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    arrays = {}
    for run in sorted(Path("work/sweeps").glob("*/runs/*")):
        if not (run / "calibration.json").is_file():
            continue
        sweep = run.parent.parent.name
        for split in ("val", "test") if sweep in args.test else ("val",):
            cases = validation_cases(run, args.device, split)
            arrays.update({f"{sweep}/{run.name}/{split}/{k}": np.asarray(v) for k, v in cases.items()})
            print(sweep, run.name, split, len(cases["labels"]), flush=True)
    np.savez_compressed(args.out, **arrays)


if __name__ == "__main__":
    main()
