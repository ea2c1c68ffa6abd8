"""The 3-D lesion report: volumes, diameters, PET uptake, modalities on one grid, with pictures.

``volume_report({"CT": (image, mask), "PET": (image, mask), ...}, out_dir)`` writes

- ``report.json``: per series the source, geometry, units and measurements on its own grid
  (volume mL, maximum 3-D diameter, RECIST-style long/short axis, PET SUVmax/mean/peak, MTV,
  TLG), the common grid, and per series the agreement of its lesion with the reference series'
  lesion on that grid (Dice, centroid distance in mm);
- ``report.md`` and ``report.html`` (self-contained): the same as tables, and for every series
  axial, coronal and sagittal slices through the lesion centre on the common grid with the
  series' own contour (colour) and the reference contour (white);
- ``slices_<series>.png``: those pictures.

Example:
    >>> volume_report({"CT": ("STS_001/CT/image", "STS_001/CT/mask/RS.dcm"),
    ...                "PET": ("STS_001/PET/image", "STS_001/PET/mask/RS.dcm")}, "out")  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from osteolens import RESEARCH_NOTICE, __version__
from osteolens.errors import OsteolensError
from osteolens.io.lesion import load_image_and_mask
from osteolens.volumes.align import resample_to
from osteolens.volumes.measure import lesion_measurements

COLOURS = {"CT": "#ff5a36", "MR": "#36b3ff", "PT": "#ffd200"}
WINDOWS = {"CT": (-160.0, 240.0)}  # soft-tissue window; others: 1st-99th percentile


def _centroid_mm(mask, vol) -> np.ndarray:
    idx = np.argwhere(mask).mean(axis=0)[::-1]  # (x, y, z) index
    return (vol.affine @ np.r_[idx, 1.0])[:3]


def _slices_png(vol, mask, ref_mask, centre, name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arr = vol.array
    lo, hi = WINDOWS.get(vol.modality) or tuple(np.percentile(arr[arr != 0] if np.any(arr != 0) else arr, [1, 99]))
    z, y, x = (int(round(c)) for c in centre)
    sz, sy, sx = vol.spacing
    views = [("axial", arr[z], mask[z], ref_mask[z], sy / sx),
             ("coronal", arr[:, y, :][::-1], mask[:, y, :][::-1], ref_mask[:, y, :][::-1], sz / sx),
             ("sagittal", arr[:, :, x][::-1], mask[:, :, x][::-1], ref_mask[:, :, x][::-1], sz / sy)]
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.8), facecolor="black")
    for ax, (title, img, m, r, aspect) in zip(axes, views):
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
        if r.any():
            ax.contour(r, levels=[0.5], colors="white", linewidths=0.8)
        if m.any():
            ax.contour(m, levels=[0.5], colors=COLOURS.get(vol.modality, "#ff5a36"), linewidths=1.2)
        ax.set_title(f"{name} {title}", color="white", fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90, facecolor="black")
    plt.close(fig)


def volume_report(series: dict[str, tuple], out_dir: str | Path, reference: str | None = None,
                  roi: str | None = None, register: bool = False) -> dict:
    """Measure one lesion in every series, align the series, and write the report.

    Args:
        series: name -> (image, mask) in any form :func:`osteolens.io.lesion.load_image_and_mask` reads.
        out_dir: folder for report.json / report.md / report.html / slices_*.png.
        reference: the series whose grid the others are resampled to (default: CT if present,
            else the first).
        roi: RTSTRUCT ROI name, when a structure set holds several.
        register: rigid mutual-information registration before resampling (series from
            different sessions); by default series are aligned by their patient coordinates.

    Returns:
        The report as a dict (also written to report.json).
    """
    if not series:
        raise OsteolensError("volume report: no series given")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    loaded = {}
    for name, (image, mask) in series.items():
        vol, m = load_image_and_mask(image, mask, roi)
        if vol.array.shape[0] < 2:
            raise OsteolensError(f"{image}: a volume report needs a 3-D series, this is a single slice")
        loaded[name] = (vol, m)
    if reference is None:
        reference = next((n for n, (v, _) in loaded.items() if v.modality == "CT"), next(iter(loaded)))
    if reference not in loaded:
        raise OsteolensError(f"volume report: reference series {reference!r} is not among {', '.join(loaded)}")
    ref_vol, ref_mask = loaded[reference]
    frames = {n: v.meta.get("frame_of_reference_uid", "") for n, (v, _) in loaded.items()}
    shared_frame = len({f for f in frames.values() if f}) <= 1
    report = {
        "notice": RESEARCH_NOTICE, "osteolens": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "reference_series": reference, "alignment": "rigid mutual-information registration" if register else
        "patient coordinates (shared frame of reference)" if shared_frame else
        "patient coordinates, although the frames of reference differ: check the agreement figures",
        "common_grid": {"shape_zyx": list(ref_vol.array.shape), "spacing_zyx_mm": [round(s, 4) for s in ref_vol.spacing],
                        "origin_xyz_mm": [round(o, 3) for o in ref_vol.origin]},
        "series": {},
    }
    centre = np.argwhere(ref_mask).mean(axis=0)
    ref_centroid = _centroid_mm(ref_mask, ref_vol)
    for name, (vol, m) in loaded.items():
        entry = {"source": vol.source, "modality": vol.modality, "units": vol.units,
                 "shape_zyx": list(vol.array.shape), "spacing_zyx_mm": [round(s, 4) for s in vol.spacing],
                 "frame_of_reference_uid": frames[name],
                 "measurements": {k: (round(v, 4) if isinstance(v, float) else v)
                                  for k, v in lesion_measurements(vol.array, m, vol.spacing, vol.modality).items()}}
        if name == reference:
            on_grid, mask_on_grid = vol, m
        else:
            on_grid, mask_on_grid = resample_to(vol, ref_vol, m, register=register)
        both = np.count_nonzero(mask_on_grid & ref_mask)
        entry["agreement_with_reference"] = {
            "dice": round(2 * both / (np.count_nonzero(mask_on_grid) + np.count_nonzero(ref_mask)), 4),
            "centroid_distance_mm": round(float(np.linalg.norm(_centroid_mm(m, vol) - ref_centroid)), 2),
            "volume_on_common_grid_ml": round(float(np.count_nonzero(mask_on_grid) * ref_vol.voxel_volume_ml()), 3),
        }
        picture = out / f"slices_{name}.png"
        _slices_png(on_grid, mask_on_grid, ref_mask, centre, name, picture)
        entry["slices_png"] = picture.name
        report["series"][name] = entry
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(_markdown(report))
    (out / "report.html").write_text(_html(report, out))
    return report


ROWS = [("volume_ml", "volume (mL)"), ("max_3d_diameter_mm", "max 3-D diameter (mm)"),
        ("long_axis_mm", "axial long axis (mm)"), ("short_axis_mm", "axial short axis (mm)"),
        ("suv_max", "SUVmax"), ("suv_mean", "SUVmean"), ("suv_peak", "SUVpeak (1 mL)"),
        ("mtv_suv2.5_ml", "MTV SUV>=2.5 (mL)"), ("mtv_41pct_ml", "MTV 41% SUVmax (mL)"), ("tlg_suv2.5", "TLG SUV>=2.5")]


def _table_rows(report: dict) -> list[list[str]]:
    names = list(report["series"])
    rows = [["", *names]]
    for key, label in ROWS:
        values = [report["series"][n]["measurements"].get(key) for n in names]
        if any(v is not None for v in values):
            rows.append([label, *("" if v is None else f"{v:.4g}" for v in values)])
    rows.append(["Dice with " + report["reference_series"], *(f"{report['series'][n]['agreement_with_reference']['dice']:.3f}" for n in names)])
    rows.append(["centroid shift (mm)", *(f"{report['series'][n]['agreement_with_reference']['centroid_distance_mm']:.1f}" for n in names)])
    return rows


def _markdown(report: dict) -> str:
    rows = _table_rows(report)
    lines = [f"# Lesion volume report\n\n{report['notice']}\n",
             f"Reference grid: {report['reference_series']} ({' x '.join(map(str, report['common_grid']['shape_zyx']))} voxels, "
             f"spacing {report['common_grid']['spacing_zyx_mm']} mm z/y/x); alignment: {report['alignment']}.\n",
             "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    lines.append("")
    lines += [f"![{n}]({e['slices_png']})" for n, e in report["series"].items()]
    return "\n".join(lines) + "\n"


def _html(report: dict, out: Path) -> str:
    e = html.escape
    rows = _table_rows(report)
    head = "".join(f"<th>{e(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    pictures = "".join(
        f"<figure><img alt='{e(n)} slices' src='data:image/png;base64,"
        f"{base64.b64encode((out / s['slices_png']).read_bytes()).decode()}'><figcaption>{e(n)}: {e(s['source'])}"
        f"</figcaption></figure>" for n, s in report["series"].items())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>osteolens volume report</title><style>"
            "body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}.notice{background:#fff3cd;padding:8px}"
            "img{max-width:100%}</style></head><body>"
            f"<h1>Lesion volume report</h1><p class='notice'>{e(report['notice'])}</p>"
            f"<p>Reference grid: {e(report['reference_series'])}; alignment: {e(report['alignment'])}.</p>"
            f"<table><tr>{head}</tr>{body}</table>{pictures}"
            f"<p>osteolens {e(report['osteolens'])}, {e(report['created'])}</p></body></html>")
