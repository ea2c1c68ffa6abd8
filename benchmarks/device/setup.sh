# On the device (see pack.sh): install the wheels, unpack the images as PNG, write work/btxrd/, build the image cache.
set -e
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site gpu/whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/benchmarks
tar xf gpu/data.tar -C gpu
python3 - <<'PY'
import csv, os, shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from PIL import Image
os.makedirs("gpu/png", exist_ok=True); os.makedirs("work/btxrd", exist_ok=True)
rows = list(csv.DictReader(open("gpu/data/manifest_src.csv")))
def one(r):
    Image.open(f"gpu/data/images/{Path(r['image']).stem}.webp").convert("L").save(f"gpu/png/{Path(r['image']).stem}.png")
with ThreadPoolExecutor(16) as pool:
    list(pool.map(one, rows))
for r in rows:  # paths relative to work/btxrd/
    r["image"] = f"../../gpu/png/{Path(r['image']).stem}.png"
    r["mask"] = f"../../gpu/data/masks/{Path(r['mask']).name}" if r["mask"] else ""
with open("work/btxrd/manifest.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0])); w.writeheader(); w.writerows(rows)
for f in Path("gpu/data").glob("splits*.csv"):
    shutil.copy(f, "work/btxrd/")
print(f"{len(rows)} cases")
PY
sha256sum work/btxrd/splits*.csv
python3 -c "
import json
from osteolens.training.config import TrainConfig
c = json.load(open('configs/radiograph_default.json')); c.update(manifest='work/btxrd/manifest.csv', splits='work/btxrd/splits.csv')
print('image cache', TrainConfig(**c).cached().images.shape)"
