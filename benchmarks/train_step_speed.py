"""Seconds per training step of the radiograph model, float32 against bfloat16 autocast, on this CPU.

One step = forward, multitask loss, backward and AdamW update on a batch of synthetic images
(the step's cost does not depend on the pixel values) with the shipped config's size, batch,
threads and frozen blocks. The first two steps are warm-up; the median of the rest is reported.

Usage: python benchmarks/train_step_speed.py [--config configs/radiograph_default.json] [--steps 7] [--tag TAG]
Writes benchmarks/results/train_step_speed[_TAG].json. A CPU without native bfloat16 (no AVX-512 BF16
or AMX) emulates it: there bfloat16 is several times slower, and the config's "auto" picks float32.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from machine import cpu_description
from osteolens.data.clinical import N_CLINICAL
from osteolens.training.config import load_config
from osteolens.training.trainer import build_model, native_bfloat16, train_mode, train_step

REPO = Path(__file__).resolve().parents[1]


def step_seconds(cfg, steps: int) -> list[float]:
    """Wall time of ``steps`` calls of the trainer's own :func:`train_step` with ``cfg``'s precision."""
    torch.manual_seed(0)
    model = build_model(cfg.model_copy(update={"pretrained": False}))
    train_mode(model, cfg)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    b, s = cfg.batch_size, cfg.image_size
    x = torch.rand(b, 1, s, s)
    clin = torch.rand(b, N_CLINICAL) if cfg.clinical else None
    labels, subtypes = torch.randint(0, 3, (b,)), torch.randint(-1, 9, (b,))
    masks = (torch.rand(b, 1, s, s) > 0.95).float()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        train_step(model, opt, x, clin, labels, subtypes, masks, torch.ones(3), cfg)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "configs" / "radiograph_default.json"))
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--tag", default="", help="suffix of the results file (one per machine measured)")
    args = ap.parse_args()
    cfg = load_config(args.config)
    torch.set_num_threads(cfg.threads)
    rows = {}
    print(f"{'precision':10s} {'median s/step':>14s} {'min':>6s}")
    for precision in ("float32", "bfloat16"):
        t = step_seconds(cfg.model_copy(update={"precision": precision}), args.steps)[2:]
        rows[precision] = {"median_s": round(float(np.median(t)), 3), "min_s": round(float(np.min(t)), 3), "n": len(t)}
        print(f"{precision:10s} {rows[precision]['median_s']:14.2f} {rows[precision]['min_s']:6.2f}")
    speedup = rows["float32"]["median_s"] / rows["bfloat16"]["median_s"]
    print(f"bfloat16 speed-up: {speedup:.2f}x")
    cpu = cpu_description()
    result = {"config": str(args.config), "image_size": cfg.image_size, "batch_size": cfg.batch_size, "threads": cfg.threads,
              "cpu_count": os.cpu_count(), "processor": cpu["name"],
              "cpu_capability": cpu["capability"],
              "native_bfloat16": native_bfloat16(torch.device("cpu")), "torch": torch.__version__, "steps": rows,
              "bfloat16_speedup": round(speedup, 2)}
    out = REPO / "benchmarks" / "results" / f"train_step_speed{'_' + args.tag if args.tag else ''}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
