"""How the radiograph model's figures move when the same radiographs arrive differently.

Hospital radiographs differ from BTXRD's 8-bit PNGs in how they are stored (16-bit PNG, DICOM
with MONOCHROME1 and JPEG 2000, lossy JPEG), in resolution, and in the manufacturer's image
processing (contrast curve, sharpness, noise). Each variant below rewrites every image of a split
as files, runs the real pipeline (``analyze`` with the recorded clinical data, then ``evaluate``
with group-bootstrap CIs) and compares it with the ``control``: the same images re-encoded as
8-bit PNG with no other change. For each variant it reports macro, tumour-vs-normal and
malignant AUC, tumour Dice, ECE, the share of images whose decision (normal / benign / malignant
/ indeterminate) differs from the control's, and the paired group-bootstrap interval of the
malignant and tumour AUC differences from the control.

Nothing is chosen from these figures; they say how far the held-out figures can be trusted on
images that differ from the training data in these ways. Storage variants that are lossless
(``png16``, ``dicom_monochrome1_j2k``) must reproduce the control exactly. ``dicom_padded``
frames the 12-bit DICOM in Pixel Padding Value, which analysis leaves out: it should match
``dicom_monochrome1_j2k`` (the same 8-to-12-bit rounding), not lose what ``black_frame`` (the same frame in a PNG, where nothing marks it) costs.
``noisy_dark_frame``, ``bright_frame`` and ``text_frame`` are borders that are not flat (detector noise on a dark
level, a bright collimated edge with a scatter ramp, black with burnt-in text): models that cut noisy borders
(``crop_noisy_border``) should lose little on them.

Two variants ask what the model reads rather than how images arrive. ``lesion_erased`` fills each tumour
image's true lesion (its mask dilated by 5 px) from the bone around it (OpenCV's Telea inpainting): a model
whose tumour call comes from the lesion falls towards chance on tumour against normal. ``region_erased`` fills
the same shape elsewhere in the image, where the grey under it is closest to the lesion's, to show what the
inpainting alone does. The ``_wide`` pair erase 15 px around the lesion instead of 5 (about 6% of BTXRD's 256-px
side), taking a soft-tissue mass or periosteal reaction the mask leaves out with it. Normal images are left as
they are in all four; Dice on erased lesions is not meaningful.

Usage:
    python benchmarks/radiograph_robustness.py --model osteolens-radiograph --tag holdout

Prints a table and writes ``benchmarks/results/radiograph_robustness_<tag>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pydicom
from PIL import Image
from scipy.ndimage import gaussian_filter

from osteolens.data.clinical import clinical_table
from osteolens.data.manifest import load_manifest
from osteolens.data.splits import cases_in_split, load_splits
from osteolens.evaluation.compare import compare_models
from osteolens.evaluation.report import evaluate
from osteolens.inference.analyze import analyze
from osteolens.io.dicom_write import image_to_dicom
from osteolens.io.images import read_image, read_mask, save_png, to_unit_grey
from osteolens.models.registry import load_model
from osteolens.transforms.preprocess import resize

from btxrd_options import add_btxrd_options

REPO = Path(__file__).resolve().parents[1]


def _png8(grey: np.ndarray, path: Path) -> Path:
    save_png(np.round(np.clip(grey, 0, 1) * 255).astype(np.uint8), path.with_suffix(".png"))
    return path.with_suffix(".png")


def _png16(grey: np.ndarray, path: Path) -> Path:
    eight = np.round(np.clip(grey, 0, 1) * 255).astype(np.uint16)
    out = path.with_suffix(".png")
    Image.fromarray(eight * 257).save(out)  # the control's values, spread over 16 bits
    return out


def _jpeg(quality: int) -> Callable[[np.ndarray, Path], Path]:
    def write(grey: np.ndarray, path: Path) -> Path:
        out = path.with_suffix(".jpg")
        Image.fromarray(np.round(np.clip(grey, 0, 1) * 255).astype(np.uint8)).save(out, quality=quality)
        return out
    return write


def _dicom_12bit(grey: np.ndarray, path: Path) -> tuple[pydicom.Dataset, Path]:
    """The image through ``osteolens dicom from-image`` (12-bit, full-range window), read back
    for a variant to restore, and the file it is to be saved as."""
    png = _png8(grey, path.with_name(path.name + "_src"))
    out = path.with_suffix(".dcm")
    image_to_dicom(png, out)
    png.unlink()
    return pydicom.dcmread(out), out


def _dicom_monochrome1_j2k(grey: np.ndarray, path: Path) -> Path:
    """12-bit DICOM stored the way many CR systems do: MONOCHROME1 (high values dark) and
    JPEG 2000 lossless."""
    ds, out = _dicom_12bit(grey, path)
    stored = ds.pixel_array.astype(np.uint16)
    ds.PixelData = (4095 - stored).astype(np.uint16).tobytes()
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.compress("1.2.840.10008.1.2.4.90")
    ds.save_as(out, enforce_file_format=True)
    return out


PAD_PX = 32  # the frame of ``dicom_padded`` and ``black_frame``, each side
FRAMED = ("dicom_padded", "black_frame", "noisy_dark_frame", "bright_frame", "text_frame")  # masks scored inside the frame


def _dicom_padded(grey: np.ndarray, path: Path) -> Path:
    """12-bit DICOM (``osteolens dicom from-image``) inside a 32-px frame of Pixel Padding Value,
    as a detector pads a collimated field to its full matrix; the padding is stored as the
    highest 16-bit value, outside the image's range, where a reader ignoring it shows white."""
    ds, out = _dicom_12bit(grey, path)
    stored = np.pad(ds.pixel_array.astype(np.uint16), PAD_PX, constant_values=65535)
    ds.Rows, ds.Columns = stored.shape
    ds.BitsStored, ds.HighBit = 16, 15
    ds.add_new(0x00280120, "US", 65535)  # Pixel Padding Value
    ds.PixelData = stored.tobytes()
    ds.save_as(out, enforce_file_format=True)
    return out


def _black_frame(grey: np.ndarray, path: Path) -> Path:
    """8-bit PNG with a black 32-px border: an export that keeps the collimated edge, with no
    padding attribute to say that the border is not image."""
    return _png8(np.pad(grey, PAD_PX), path)


def _seeded(path: Path) -> np.random.Generator:
    """The same random numbers for the same file on every run."""
    return np.random.default_rng(zlib.crc32(path.stem.encode()))


def _frame(grey: np.ndarray, border: np.ndarray, path: Path) -> Path:
    """``grey`` inside a 32-px frame whose pixels are ``border`` (an array of the framed shape)."""
    framed = border.copy()
    framed[PAD_PX:-PAD_PX, PAD_PX:-PAD_PX] = grey
    return _png8(framed, path)


def _noisy_dark_frame(grey: np.ndarray, path: Path) -> Path:
    """A 32-px border of detector noise on a dark level (grey 0.03, sigma 0.01): an unexposed edge
    exported without an electronic shutter, so nothing in it is exactly flat."""
    shape = (grey.shape[0] + 2 * PAD_PX, grey.shape[1] + 2 * PAD_PX)
    return _frame(grey, 0.03 + _seeded(path).normal(0, 0.01, shape), path)


def _bright_frame(grey: np.ndarray, path: Path) -> Path:
    """A 32-px collimated edge shown bright, as film behind the collimator's lead: grey 0.85 falling
    to 0.75 across the image (scatter), with noise of sigma 0.01."""
    shape = (grey.shape[0] + 2 * PAD_PX, grey.shape[1] + 2 * PAD_PX)
    ramp = np.linspace(0.85, 0.75, shape[1])[None, :]
    return _frame(grey, ramp + _seeded(path).normal(0, 0.01, shape), path)


def _text_frame(grey: np.ndarray, path: Path) -> Path:
    """A 32-px black border with white text burnt into it (side marker and an annotation line), as
    screenshots and secondary captures carry."""
    from PIL import ImageDraw

    shape = (grey.shape[0] + 2 * PAD_PX, grey.shape[1] + 2 * PAD_PX)
    canvas = Image.new("L", shape[::-1], 0)
    draw = ImageDraw.Draw(canvas)
    draw.text((6, 6), "R", fill=255)
    draw.text((PAD_PX + 10, shape[0] - PAD_PX + 10), "AP 2019-03-14  70 kV", fill=255)
    return _frame(grey, np.asarray(canvas, dtype=np.float64) / 255.0, path)


def _erase(grey: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``grey`` with ``region`` filled from its surroundings (Telea inpainting, radius 5 px, on 8-bit values)."""
    import cv2

    eight = np.round(np.clip(grey, 0, 1) * 255).astype(np.uint8)
    return cv2.inpaint(eight, region.astype(np.uint8), 5, cv2.INPAINT_TELEA).astype(np.float64) / 255.0


def _dilated(truth: np.ndarray, margin_px: int) -> np.ndarray:
    from scipy.ndimage import binary_dilation

    return binary_dilation(truth, iterations=margin_px)


def _lesion_erased(margin_px: int):
    """The true lesion and ``margin_px`` around it (its edge, periosteal reaction, a soft-tissue mass) filled from the
    bone around it; images without a lesion unchanged."""
    def write(grey: np.ndarray, path: Path, truth: np.ndarray | None) -> Path:
        if truth is None or not truth.any():
            return _png8(grey, path)
        return _png8(_erase(grey, _dilated(truth, margin_px)), path)
    return write


def _elsewhere(grey: np.ndarray, shape: np.ndarray) -> np.ndarray | None:
    """``shape`` moved to where it lies wholly inside the image, clear of itself, over the grey closest to its own
    (every 4 px); None where it fits nowhere."""
    ys, xs = np.nonzero(shape)
    h, w = grey.shape
    own = grey[shape].mean()
    best, best_gap = None, np.inf
    for dy in range(-ys.min(), h - ys.max(), 4):
        for dx in range(-xs.min(), w - xs.max(), 4):
            ty, tx = ys + dy, xs + dx
            moved = np.zeros_like(shape)
            moved[ty, tx] = True
            if (moved & shape).any():
                continue
            gap = abs(grey[ty, tx].mean() - own)
            if gap < best_gap:
                best, best_gap = moved, gap
    return best


def _region_erased(margin_px: int):
    """The control for ``_lesion_erased(margin_px)``: the same filled shape, moved off the lesion to similar grey
    (the image unchanged where it fits nowhere else)."""
    def write(grey: np.ndarray, path: Path, truth: np.ndarray | None) -> Path:
        if truth is None or not truth.any():
            return _png8(grey, path)
        moved = _elsewhere(grey, _dilated(truth, margin_px))
        return _png8(grey if moved is None else _erase(grey, moved), path)
    return write


NEEDS_TRUTH = ("lesion_erased", "region_erased", "lesion_erased_wide", "region_erased_wide")  # writers that are also given the case's true mask


def _resampled(factor: float) -> Callable[[np.ndarray, Path], Path]:
    def write(grey: np.ndarray, path: Path) -> Path:
        h, w = grey.shape
        return _png8(resize(grey.astype(np.float32), (round(h * factor), round(w * factor))), path)
    return write


def _intensity(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray, Path], Path]:
    return lambda grey, path: _png8(fn(grey), path)


def _noise(sigma: float) -> Callable[[np.ndarray, Path], Path]:
    def write(grey: np.ndarray, path: Path) -> Path:
        return _png8(grey + _seeded(path).normal(0, sigma, grey.shape), path)
    return write


VARIANTS: dict[str, tuple[str, Callable[[np.ndarray, Path], Path]]] = {
    "control": ("8-bit PNG, no other change (the reference)", _png8),
    "png16": ("16-bit PNG, same values (lossless)", _png16),
    "dicom_monochrome1_j2k": ("DICOM, 12-bit MONOCHROME1, JPEG 2000 lossless (lossless)", _dicom_monochrome1_j2k),
    "dicom_padded": ("DICOM, 12-bit, in a 32-px frame of Pixel Padding Value", _dicom_padded),
    "black_frame": ("8-bit PNG in a 32-px black border (no padding attribute)", _black_frame),
    "noisy_dark_frame": ("8-bit PNG in a 32-px dark border of noise (grey 0.03, sigma 0.01)", _noisy_dark_frame),
    "bright_frame": ("8-bit PNG in a 32-px bright collimated border (0.85 to 0.75, sigma 0.01)", _bright_frame),
    "text_frame": ("8-bit PNG in a 32-px black border with burnt-in white text", _text_frame),
    "jpeg_q75": ("JPEG, quality 75", _jpeg(75)),
    "jpeg_q40": ("JPEG, quality 40", _jpeg(40)),
    "half_resolution": ("half the pixels a side", _resampled(0.5)),
    "double_resolution": ("twice the pixels a side", _resampled(2.0)),
    "gamma_0.7": ("contrast curve: grey ** 0.7 (brighter)", _intensity(lambda g: g ** 0.7)),
    "gamma_1.4": ("contrast curve: grey ** 1.4 (darker)", _intensity(lambda g: g ** 1.4)),
    "low_contrast": ("contrast halved about mid-grey", _intensity(lambda g: 0.25 + 0.5 * g)),
    "blur_1px": ("Gaussian blur, sigma 1 px (less sharp)", _intensity(lambda g: gaussian_filter(g, 1.0))),
    "noise_0.03": ("Gaussian noise, sigma 0.03 of the grey range", _noise(0.03)),
    "lesion_erased": ("each true lesion (+5 px) filled from the bone around it", _lesion_erased(5)),
    "region_erased": ("the same shape filled elsewhere, over similar grey (control)", _region_erased(5)),
    "lesion_erased_wide": ("each true lesion (+15 px) filled from the bone around it", _lesion_erased(15)),
    "region_erased_wide": ("the same wide shape filled elsewhere, over similar grey (control)", _region_erased(15)),
}


def _decision(table: pd.DataFrame) -> pd.Series:
    return table.set_index("image")["label"]


def run_variant(name: str, cases, manifest, work: Path, model, clinical: pd.DataFrame, args) -> dict:
    """Write the variant's files, analyse them, evaluate; returns figures and file paths."""
    folder = work / name
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    writer = VARIANTS[name][1]
    files, names, truth_shapes = [], {}, []
    for c in cases:
        arr, props = read_image(manifest.resolve(c.image))
        grey = to_unit_grey(arr, props)
        if name in NEEDS_TRUTH:
            truth = read_mask(manifest.resolve(c.mask)) if c.mask else None
            out = writer(grey, images / c.case_id, truth)
        else:
            out = writer(grey, images / c.case_id)
        files.append(out)
        names[out.name] = Path(c.image).name
        truth_shapes.append(arr.shape[:2])  # BTXRD's masks share their image's grid
    # clinical rows follow the file names this variant wrote
    by_source = clinical.set_index("image")
    table = by_source.loc[[names[f.name] for f in files]].reset_index(drop=True)
    table.insert(0, "image", [f.name for f in files])
    table.to_csv(folder / "clinical.csv", index=False)
    t0 = time.perf_counter()
    analyze(files, folder / "analysis", model=model, clinical_csv=folder / "clinical.csv", overlays=False)
    seconds = time.perf_counter() - t0
    pred = pd.read_csv(folder / "analysis" / "predictions.csv", dtype=str, keep_default_na=False)
    failed = pred[pred["status"] != "ok"]
    if len(failed):
        raise SystemExit(f"{name}: {len(failed)} images failed, e.g. {failed.iloc[0]['error']}")
    # masks are scored on the truth's grid (BTXRD's 256 x 256); resampled variants are mapped back
    masks = folder / "analysis" / "masks_on_truth_grid"
    masks.mkdir(exist_ok=True)
    for c, f, truth_shape in zip(cases, files, truth_shapes):
        pred_mask = read_mask(folder / "analysis" / "masks" / f"{f.stem}.png")
        if name in FRAMED:
            pred_mask = pred_mask[PAD_PX:-PAD_PX, PAD_PX:-PAD_PX]
        if pred_mask.shape != truth_shape:
            pred_mask = resize(pred_mask.astype(np.float32), truth_shape, nearest=True) > 0.5
        save_png(pred_mask.astype(np.uint8) * 255, masks / f"{c.case_id}.png")
    pred["image"] = [names[i] for i in pred["image"]]  # the manifest's names, so evaluate finds the truth
    pred["mask"] = "masks_on_truth_grid/" + pred["image"].map(lambda s: Path(s).stem) + ".png"
    pred["boxes"] = ""  # detection is not scored here: boxes are in each variant's own pixels
    pred.to_csv(folder / "analysis" / "predictions_eval.csv", index=False)
    metrics = evaluate(folder / "analysis" / "predictions_eval.csv", args.manifest, folder / "evaluation",
                       splits=args.splits, split=args.split, n_boot=args.n_boot, seed=0, target_sensitivity=0.92)
    c = metrics["classification"]
    truth = pd.Series({Path(case.image).name: case.label for case in cases})[pred["image"]].to_numpy()
    tumour, normal = truth != "normal", truth == "normal"
    p_tumour = 1.0 - pred["p_normal"].astype(float).to_numpy()
    return {
        "description": VARIANTS[name][0], "seconds_per_image": seconds / len(files),
        "predictions": str(folder / "analysis" / "predictions_eval.csv"), "table": pred,
        "figures": {
            "macro_auc": c["macro_auc"], "auc_tumour_vs_normal": c["auc"]["tumour_vs_normal"],
            "auc_malignant": c["auc"]["malignant"], "dice_mean_tumour": metrics["segmentation"]["dice_mean_tumour"],
            "ece": c["calibration"]["ece"], "indeterminate_rate": c["indeterminate_rate"],
            # what moves the tumour call: tumour images called normal, and the mean P(tumour) of each class
            "tumour_called_normal": float((pred["label"].to_numpy()[tumour] == "normal").mean()),
            "mean_p_tumour_tumour_images": float(p_tumour[tumour].mean()),
            "mean_p_tumour_normal_images": float(p_tumour[normal].mean()),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_btxrd_options(ap, split="test", tag="holdout")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    ap.add_argument("--n-boot", type=int, default=1000)
    args = ap.parse_args()
    names = ["control"] + [v for v in args.variants if v != "control"]
    manifest = load_manifest(args.manifest)
    cases = cases_in_split(manifest, load_splits(args.splits), args.split)
    clinical = clinical_table(cases)
    work = REPO / "work" / "bench" / f"robustness_{args.tag}"
    model = load_model(args.model)

    runs = {}
    for name in names:
        runs[name] = run_variant(name, cases, manifest, work, model, clinical, args)
        f = runs[name]["figures"]
        print(f"  {name}: macro AUC {f['macro_auc']['value']:.3f}, Dice {f['dice_mean_tumour']['value']:.3f}", flush=True)
    control = runs["control"]
    rows = []
    for name in names:
        r = runs[name]
        changed = float((_decision(r["table"]) != _decision(control["table"])).mean())
        paired = {}
        if name != "control":
            for task in ("malignant", "tumour_vs_normal"):
                cmp = compare_models(r["predictions"], control["predictions"], args.manifest, task=task,
                                     splits=args.splits, split=args.split, n_boot=args.n_boot, seed=0)
                paired[task] = {"difference": cmp["difference"],
                                "ci_low": cmp["bootstrap"]["ci_low"], "ci_high": cmp["bootstrap"]["ci_high"]}
        rows.append({"variant": name, "description": r["description"], "decision_changed": changed,
                     "seconds_per_image": r["seconds_per_image"], "figures": r["figures"], "paired_vs_control": paired})

    print(f"{args.tag}: {len(cases)} {args.split}-split images, model {model.name} {model.metadata['version']}; "
          "T->N: tumour images called normal; P(T)|N: mean P(tumour) of normal images")
    head = f"{'variant':22s} {'macro AUC':>18s} {'malignant AUC':>18s} {'tumour AUC':>18s} {'Dice':>18s} {'ECE':>6s} {'changed':>8s} {'T->N':>6s} {'P(T)|N':>7s}  {'malignant dAUC (95% CI)':>26s}"
    print(head)

    def cell(m):
        return f"{m['value']:.3f} ({m['ci_low']:.3f}-{m['ci_high']:.3f})"

    for row in rows:
        f = row["figures"]
        d = row["paired_vs_control"].get("malignant")
        dtxt = f"{d['difference']:+.3f} ({d['ci_low']:+.3f} to {d['ci_high']:+.3f})" if d else ""
        print(f"{row['variant']:22s} {cell(f['macro_auc']):>18s} {cell(f['auc_malignant']):>18s} "
              f"{cell(f['auc_tumour_vs_normal']):>18s} {cell(f['dice_mean_tumour']):>18s} {f['ece']['value']:6.3f} "
              f"{row['decision_changed']:8.3f} {f['tumour_called_normal']:6.3f} {f['mean_p_tumour_normal_images']:7.3f}  {dtxt:>26s}")
    result = {"tag": args.tag, "model": model.name, "model_version": model.metadata["version"],
              "model_sha256": model.metadata["sha256"], "split": args.split, "splits_file": str(args.splits),
              "n_cases": len(cases), "n_boot": args.n_boot, "variants": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"radiograph_robustness_{args.tag}.json"
    path.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
