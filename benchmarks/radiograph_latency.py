"""Latency of the radiograph model on the CPU (model loaded, 2 threads), one 256-px BTXRD image.

Measures, over repeated runs on real BTXRD images:
- the network alone (ONNX Runtime), one image, batch 1;
- the network on the flip-TTA batch of 2 that the analysis runs;
- for a model with a lesion refiner, the refiner on one view and its flip (the analysis runs it
  once per lesion it looks at again, in one batch);
- the whole analysis in memory: preprocessing, TTA network, calibration, mask, boxes, subtype,
  saliency at input size (``analyze_image``);
- the same plus reading the file and writing the mask, overlay and JSON;
- both again for a full-size radiograph (``--full-size``, default 2500 x 3000 px, the size of a CR
  or DX film: a BTXRD image enlarged bicubically), where the mask's post-processing, the overlay and
  the PNG files, not the network, set the time.

Target (issue 3): <= 30 ms for the network alone; <= 100 ms end to end including saliency.
Usage: python benchmarks/radiograph_latency.py [--model NAME] [--runs 100] [--full-size WxH] [--tag T]   (-> radiograph_latency[_T].json)
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

from machine import cpu_description
from osteolens.inference.analyze import analyze, analyze_image
from osteolens.io.images import read_image, to_unit_grey
from osteolens.models.registry import load_model
from osteolens.transforms.preprocess import preprocess

REPO = Path(__file__).resolve().parents[1]


def timed(fn, runs: int) -> dict:
    for _ in range(5):
        fn()
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        t.append((time.perf_counter() - t0) * 1000)
    t = np.array(t)
    return {"median_ms": round(float(np.median(t)), 2), "p95_ms": round(float(np.percentile(t, 95)), 2),
            "mean_ms": round(float(t.mean()), 2), "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="osteolens-radiograph")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "btxrd256"))
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    ap.add_argument("--full-size", default="2500x3000", help="W x H of the full-size radiograph rows ('' to skip them)")
    ap.add_argument("--tag", default="", help="suffix of the results file (radiograph_latency_<tag>.json)")
    args = ap.parse_args()
    model = load_model(args.model, threads=args.threads)
    images = sorted((Path(args.data) / "images").glob("*.png"))[:20]
    arrays = [read_image(p) for p in images]
    x = preprocess(to_unit_grey(*arrays[0]), model.image_size)[None]
    x2 = np.concatenate([x, x[..., ::-1]])
    xr = preprocess(to_unit_grey(*arrays[0])[64:192, 64:192], model.refiner_size)[None] if model.refiner is not None else None
    clin = np.zeros((1, len(model.metadata["inputs"].get("clinical", {}).get("features", []))), np.float32)
    clinical = {"age": 30, "sex": "M", "region": "lower limb", "view": "frontal"}
    i = {"k": 0}

    def one_analysis():
        arr, props = arrays[i["k"] % len(arrays)]
        i["k"] += 1
        analyze_image(model, arr, props, clinical)

    with tempfile.TemporaryDirectory() as tmp:
        def with_files():
            p = images[i["k"] % len(images)]
            i["k"] += 1
            analyze([p], tmp, model=model)

        rows = {
            "network alone, batch 1": timed(lambda: model.run(x, clin if model.uses_clinical else None), args.runs),
            "network, flip-TTA batch 2": timed(lambda: model.run(x2, np.repeat(clin, 2, 0) if model.uses_clinical else None), args.runs),
            **({"lesion refiner, one view and its flip (batch 2)": timed(lambda: model.run_refiner(np.ascontiguousarray(
                np.concatenate([xr, xr[..., ::-1]]))), args.runs)} if model.refiner is not None else {}),
            "analysis in memory incl. saliency": timed(one_analysis, args.runs),
            "analysis incl. file read and all outputs written": timed(with_files, max(20, args.runs // 5)),
        }
        if args.full_size:
            from PIL import Image

            w, h = (int(v) for v in args.full_size.lower().split("x"))
            big = Path(tmp) / "full_size.png"
            Image.open(images[0]).convert("L").resize((w, h), Image.BICUBIC).save(big, compress_level=1)
            big_arr = read_image(big)
            runs = max(5, args.runs // 10)
            rows[f"{w} x {h} px: analysis in memory incl. saliency"] = timed(lambda: analyze_image(model, *big_arr, clinical), runs)
            rows[f"{w} x {h} px: incl. file read and all outputs written"] = timed(
                lambda: analyze([big], Path(tmp) / "full", model=model), runs)
    print(f"model {model.name} {model.metadata['version']}, {args.threads} threads, {os.cpu_count()} CPUs, 256x256 BTXRD images")
    print(f"{'what':58s} {'median ms':>10s} {'p95 ms':>8s}")
    for k, v in rows.items():
        print(f"{k:58s} {v['median_ms']:10.1f} {v['p95_ms']:8.1f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "radiograph_latency", "model": model.name, "sha256": model.metadata["sha256"],
              "threads": args.threads, "cpu_count": os.cpu_count(), "machine": platform.platform(),
              "cpu": cpu_description(),
              "targets_ms": {"network alone": 30, "end to end incl. saliency": 100}, "rows": rows}
    path = out / f"radiograph_latency{'_' + args.tag if args.tag else ''}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
