"""Tile classifier figures (grouped CV with 95% CIs) and whole-slide throughput on 2 CPU cores.

Usage: python benchmarks/pathology_tiles.py [--tiles ../shared/data/osteosarcoma_tiles]
Prints the CV table for the default settings and with Macenko normalisation, then analyses a
6 x 6 mosaic slide (1024-px tiles at 10x) made of the real tiles and reports tiles per second.
Writes benchmarks/results/pathology_tiles.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from osteolens.pathology.classifier import (CLASSES, TileSettings, cross_validate, load_tile_folder, read_rgb_tile,
                                            tile_features)
from osteolens.pathology.features import TileFeatureExtractor
from osteolens.pathology.slide import analyze_slide

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", default=str(REPO.parent / "shared" / "data" / "osteosarcoma_tiles"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = ap.parse_args()
    paths, labels, groups = load_tile_folder(args.tiles)
    tiles = [read_rgb_tile(p) for p in paths]
    extractor = TileFeatureExtractor()
    rows = []
    for name, settings in (("default (2x2 squares, no stain normalisation)", TileSettings()),
                           ("2x2 squares + Macenko", TileSettings(stain_normalise=True)),
                           ("whole tile at 256 px, no normalisation", TileSettings(crops=1))):
        feats = tile_features(tiles, settings, extractor)
        for seed in (0, 1, 2):
            cv = cross_validate(feats, labels, groups, settings, seed=seed)
            rows.append({"settings": name, "seed": seed, "accuracy": cv["accuracy"], "ece": cv["ece"],
                         "sensitivity": cv["sensitivity"], "specificity": cv["specificity"],
                         "confusion_matrix": cv["confusion_matrix"]["matrix"]})
    print(f"{'settings':48s} {'seed':>4s} {'accuracy (95% CI)':>22s}  sens non-tumour/viable/necrotic")
    for r in rows:
        a = r["accuracy"]
        sens = "/".join(f"{r['sensitivity'][c]['value']:.2f}" for c in CLASSES)
        print(f"{r['settings']:48s} {r['seed']:4d} {a['value']:.3f} ({a['ci_low']:.3f}-{a['ci_high']:.3f})  {sens}")
    # throughput on a mosaic slide
    side = 6
    canvas = np.full((side * 1024, side * 1024, 3), 245, np.uint8)
    for i in range(side * side):
        y, x = divmod(i, side)
        canvas[y * 1024:(y + 1) * 1024, x * 1024:(x + 1) * 1024] = tiles[i % len(tiles)]
    with tempfile.TemporaryDirectory() as tmp:
        slide = Path(tmp) / "mosaic.tif"
        Image.fromarray(canvas).save(slide)
        t0 = time.perf_counter()
        r = analyze_slide(slide, Path(tmp) / "out")
        seconds = time.perf_counter() - t0
    speed = {"tiles": r["n_tiles"], "seconds": round(seconds, 2), "tiles_per_second": round(r["n_tiles"] / seconds, 2),
             "cpu_count": os.cpu_count()}
    print(f"slide throughput: {speed['tiles']} tiles in {speed['seconds']} s = {speed['tiles_per_second']} tiles/s on {os.cpu_count()} CPUs")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pathology_tiles.json").write_text(json.dumps({"cv": rows, "throughput": speed}, indent=2) + "\n")
    print(f"wrote {out / 'pathology_tiles.json'}")


if __name__ == "__main__":
    main()
