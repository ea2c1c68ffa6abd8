"""``osteolens pathology analyze``: a whole slide -> tissue map, class areas and necrosis rate.

The slide is cut into tiles of the training tiles' field of view (1024 px at 10x, about 1 mm),
tiles with too little tissue are skipped, the rest are classified in batches, and

    necrosis rate = necrotic tumour area / (necrotic + viable tumour area)

with each tile's area weighted by its tissue fraction. Responders have a rate of at least 0.90
(Huvos grade III-IV). Outputs (written only once the whole slide is done, so that no partial
report can pass for a complete one): ``result.json``, ``tiles.csv``, ``tissue_map.png`` and
``report.html``.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np

from osteolens import RESEARCH_NOTICE, __version__
from osteolens.errors import OsteolensError
from osteolens.pathology.classifier import CLASSES, TileClassifier, tile_features
from osteolens.pathology.tissue import tissue_fraction

RESPONDER_THRESHOLD = 0.90
TRAINING_TILE_PX = 1024
TRAINING_MAGNIFICATION = 10.0
COLOURS = {"non_tumor": (60, 170, 75), "viable": (220, 40, 40), "necrotic": (240, 200, 30)}


def default_tile_model() -> Path:
    """The shipped tile classifier."""
    return Path(str(resources.files("osteolens") / "pathology" / "store" / "tile_classifier.json"))


class SlideSource:
    """A slide read through OpenSlide, or a plain (large) RGB image held in memory."""

    def __init__(self, path: str | Path, magnification: float | None = None):
        self.path = Path(path)
        self._slide = None
        self.mpp = None
        self.power = magnification
        try:
            import openslide

            fmt = openslide.OpenSlide.detect_format(str(self.path)) if self.path.is_file() else None
        except ImportError:  # pragma: no cover - openslide-python is in requirements
            fmt = None
        if fmt and fmt != "generic-tiff":
            import openslide

            try:
                self._slide = openslide.OpenSlide(str(self.path))
            except openslide.OpenSlideError as exc:
                raise OsteolensError(f"{self.path}: unreadable slide ({exc})") from exc
            props = self._slide.properties
            self.dimensions = self._slide.dimensions
            mpp = props.get(openslide.PROPERTY_NAME_MPP_X)
            self.mpp = float(mpp) if mpp else None
            if self.power is None and props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER):
                self.power = float(props[openslide.PROPERTY_NAME_OBJECTIVE_POWER])
            self.format = fmt
        else:
            from osteolens.pathology.classifier import read_rgb_tile

            self._array = read_rgb_tile(self.path)
            self.dimensions = (self._array.shape[1], self._array.shape[0])
            self.format = "image"
        if self.power is None:
            self.power = TRAINING_MAGNIFICATION

    def read(self, x: int, y: int, size: int, out_size: int) -> np.ndarray:
        """A ``size`` x ``size`` level-0 region at (x, y), returned at ``out_size`` px (white outside)."""
        import cv2

        if self._slide is not None:
            down = size / out_size
            level = self._slide.get_best_level_for_downsample(down)
            ds = self._slide.level_downsamples[level]
            region = self._slide.read_region((x, y), level, (int(round(size / ds)),) * 2).convert("RGBA")
            rgba = np.asarray(region)
            rgb = np.where(rgba[..., 3:4] == 0, 255, rgba[..., :3]).astype(np.uint8)
        else:
            w, h = self.dimensions
            rgb = np.full((size, size, 3), 255, np.uint8)
            part = self._array[y:min(y + size, h), x:min(x + size, w)]
            rgb[:part.shape[0], :part.shape[1]] = part
        return cv2.resize(rgb, (out_size, out_size), interpolation=cv2.INTER_AREA)

    def thumbnail(self, max_side: int) -> tuple[np.ndarray, float]:
        """The slide at most ``max_side`` px on its long side, and its scale (thumbnail px per level-0 px)."""
        import cv2

        w, h = self.dimensions
        scale = min(1.0, max_side / max(w, h))
        size = (max(1, int(w * scale)), max(1, int(h * scale)))
        if self._slide is not None:
            thumb = np.asarray(self._slide.get_thumbnail(size).convert("RGB"))
            thumb = cv2.resize(thumb, size, interpolation=cv2.INTER_AREA)
        else:
            thumb = cv2.resize(self._array, size, interpolation=cv2.INTER_AREA)
        return thumb, scale


@dataclass
class SlideResult:
    """The slide-level figures (also in ``result.json``)."""

    necrosis_rate: float | None
    responder: bool | None
    areas: dict
    tile_counts: dict
    n_tiles: int
    n_tissue_tiles: int
    reason: str = ""


def analyze_slide(path: str | Path, out: str | Path, model: str | Path | None = None, magnification: float | None = None,
                  min_tissue: float = 0.05, batch_size: int = 16, progress: Callable[[int, int], None] | None = None) -> dict:
    """Classify every tissue tile of a slide and estimate its necrosis rate.

    Args:
        path: an OpenSlide slide (SVS, NDPI, MRXS, ...) or a large RGB TIFF/PNG/JPEG.
        out: output folder (filled only when the whole slide succeeded).
        model: tile classifier JSON (default: the shipped one).
        magnification: objective magnification of the input; OpenSlide slides report it,
            plain images are taken as 10x unless told.
        min_tissue: tiles with a smaller tissue fraction are background.
        batch_size: tiles classified at once.
        progress: ``progress(done, total)`` per tile.

    Returns:
        The ``result.json`` dict.

    Raises:
        OsteolensError: unreadable or non-RGB input, or no tissue on the slide.
    """
    t0 = time.perf_counter()
    path = Path(path)
    if not path.exists():
        raise OsteolensError(f"{path}: slide not found")
    clf = TileClassifier.load(model or default_tile_model())
    src = SlideSource(path, magnification)
    tile = int(round(TRAINING_TILE_PX * src.power / TRAINING_MAGNIFICATION))
    read_px = 256 * clf.settings.crops
    w, h = src.dimensions
    coords = [(x, y) for y in range(0, h - tile // 2 + 1, tile) for x in range(0, w - tile // 2 + 1, tile)]
    if not coords:
        raise OsteolensError(f"{path}: slide of {w}x{h} px is smaller than half a tile ({tile} px at {src.power:g}x)")
    rows, pending = [], []

    def flush():
        if not pending:
            return
        probs = clf.predict_proba(tile_features([p[2] for p in pending], clf.settings))
        for (x, y, _, frac), p in zip(pending, probs):
            rows.append({"x": x, "y": y, "size": tile, "tissue_fraction": round(frac, 4),
                         **{f"p_{c}": round(float(v), 6) for c, v in zip(CLASSES, p)}, "class": CLASSES[int(np.argmax(p))]})
        pending.clear()

    for i, (x, y) in enumerate(coords):
        rgb = src.read(x, y, tile, read_px)
        frac = tissue_fraction(rgb)
        if frac >= min_tissue:
            pending.append((x, y, rgb, frac))
            if len(pending) >= batch_size:
                flush()
        else:
            rows.append({"x": x, "y": y, "size": tile, "tissue_fraction": round(frac, 4),
                         **{f"p_{c}": "" for c in CLASSES}, "class": "background"})
        if progress:
            progress(i + 1, len(coords))
    flush()
    rows.sort(key=lambda r: (r["y"], r["x"]))
    tissue_rows = [r for r in rows if r["class"] != "background"]
    if not tissue_rows:
        raise OsteolensError(f"{path}: no tissue found in {len(coords)} tiles (tissue fraction below {min_tissue} everywhere)")
    unit_area = (src.mpp ** 2 / 1e6, "mm2") if src.mpp else (1.0, "px2 (level 0; no pixel size in the file)")
    areas = {c: 0.0 for c in CLASSES}
    for r in tissue_rows:
        areas[r["class"]] += r["tissue_fraction"] * tile * tile * unit_area[0]
    tumour = areas["viable"] + areas["necrotic"]
    rate = areas["necrotic"] / tumour if tumour > 0 else None
    result = SlideResult(
        necrosis_rate=rate, responder=None if rate is None else rate >= RESPONDER_THRESHOLD,
        areas={k: round(v, 4) for k, v in areas.items()},
        tile_counts={c: sum(r["class"] == c for r in rows) for c in (*CLASSES, "background")},
        n_tiles=len(rows), n_tissue_tiles=len(tissue_rows),
        reason="" if rate is not None else "no tumour tissue (viable or necrotic) found: necrosis rate undefined",
    )
    payload = {
        "notice": RESEARCH_NOTICE, "software": f"osteolens {__version__}", "slide": str(path.resolve()),
        "slide_format": src.format, "dimensions": list(src.dimensions), "magnification": src.power, "mpp": src.mpp,
        "tile_size_level0_px": tile, "area_unit": unit_area[1], **result.__dict__,
        "responder_threshold": RESPONDER_THRESHOLD,
        "definition": "necrosis_rate = necrotic / (necrotic + viable) tumour area, tile areas weighted by tissue fraction",
        "model": {"path": str(model or default_tile_model()), "settings": clf.settings.__dict__,
                  "cv_accuracy": [r["accuracy"] for r in clf.info.get("cross_validation", [])]},
        "seconds": round(time.perf_counter() - t0, 2),
    }
    _write_outputs(Path(out), payload, rows, src)
    return payload


def _tissue_map(src: SlideSource, rows: list[dict], max_side: int = 1600) -> np.ndarray:
    import cv2

    thumb, scale = src.thumbnail(max_side)
    overlay = thumb.copy()
    for r in rows:
        if r["class"] == "background":
            continue
        x0, y0 = int(r["x"] * scale), int(r["y"] * scale)
        x1, y1 = int((r["x"] + r["size"]) * scale), int((r["y"] + r["size"]) * scale)
        cv2.rectangle(overlay, (x0, y0), (x1 - 1, y1 - 1), COLOURS[r["class"]], -1)
    blended = (0.55 * thumb + 0.45 * overlay).astype(np.uint8)
    band = 22
    canvas = np.full((blended.shape[0] + 2 * band, max(blended.shape[1], 420), 3), 255, np.uint8)
    canvas[band:band + blended.shape[0], :blended.shape[1]] = blended
    x = 4
    for name, colour in COLOURS.items():
        cv2.rectangle(canvas, (x, 5), (x + 12, 17), colour, -1)
        cv2.putText(canvas, name, (x + 16, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        x += 110
    cv2.putText(canvas, RESEARCH_NOTICE[:80], (4, canvas.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (120, 0, 0), 1, cv2.LINE_AA)
    return canvas


def _write_outputs(out: Path, payload: dict, rows: list[dict], src: SlideSource) -> None:
    from PIL import Image

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".osteolens-", dir=out.parent))
    try:
        (tmp / "result.json").write_text(json.dumps(payload, indent=2) + "\n")
        with open(tmp / "tiles.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        tissue_map = _tissue_map(src, rows)
        Image.fromarray(tissue_map).save(tmp / "tissue_map.png")
        buf = io.BytesIO()
        Image.fromarray(tissue_map).save(buf, format="PNG")
        (tmp / "report.html").write_text(_html(payload, base64.b64encode(buf.getvalue()).decode()))
        out.mkdir(parents=True, exist_ok=True)
        for f in tmp.iterdir():
            shutil.move(str(f), out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _html(p: dict, png_b64: str) -> str:
    e = html.escape
    rate = "undefined (" + e(p["reason"]) + ")" if p["necrosis_rate"] is None else f"{100 * p['necrosis_rate']:.1f}%"
    verdict = "n/a" if p["responder"] is None else ("responder (&ge; 90% necrosis)" if p["responder"] else "non-responder (&lt; 90% necrosis)")
    areas = "".join(f"<tr><td>{e(k)}</td><td>{v:.3f} {e(p['area_unit'])}</td><td>{p['tile_counts'][k]}</td></tr>" for k, v in p["areas"].items())
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>osteolens necrosis report</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5em}} .notice{{background:#fff3cd;border:1px solid #e0c060;padding:.6em}}
td,th{{padding:2px 8px;text-align:left}} img{{max-width:100%}}</style></head><body>
<p class="notice"><b>{e(RESEARCH_NOTICE)}</b></p>
<h1>Necrosis after chemotherapy</h1>
<p>Slide {e(Path(p['slide']).name)} ({p['dimensions'][0]} x {p['dimensions'][1]} px, {p['magnification']:g}x): {p['n_tissue_tiles']} tissue tiles of {p['n_tiles']}.</p>
<h2>Necrosis rate: {rate}; {verdict}</h2>
<p>{e(p['definition'])}.</p>
<table><tr><th>tissue</th><th>area</th><th>tiles</th></tr>{areas}</table>
<img alt="tissue map" src="data:image/png;base64,{png_b64}">
<p class="notice">{e(RESEARCH_NOTICE)} osteolens {__version__}.</p></body></html>
"""
