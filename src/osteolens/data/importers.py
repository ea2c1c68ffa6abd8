"""Turn a dataset as published (or a user's folder of images) into a manifest.

``import_btxrd`` reads the BTXRD layout (``dataset.csv``, ``images/``, ``masks/``);
``import_folder`` reads any folder of images with a CSV of labels and optional masks.
Both write ``OUT/manifest.csv`` and ``OUT/dataset.json`` (source, licence, counts, how the
patient groups were made) and return the manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from osteolens import __version__
from osteolens.data.manifest import LABELS, SUBTYPES, Case, Manifest, relative_to
from osteolens.errors import ManifestError
from osteolens.io.images import IMAGE_SUFFIXES
from osteolens.io.tables import read_text_table, repeated_rows

BTXRD_SITES = (
    "hand", "ulna", "radius", "humerus", "foot", "tibia", "fibula", "femur", "hip bone",
    "ankle-joint", "knee-joint", "hip-joint", "wrist-joint", "elbow-joint", "shoulder-joint",
)
BTXRD_REGIONS = ("upper limb", "lower limb", "pelvis")
BTXRD_VIEWS = ("frontal", "lateral", "oblique")
BTXRD_CITATION = (
    "Yao S. et al., A Radiograph Dataset for the Classification, Localization, and Segmentation "
    "of Primary Bone Tumors. Scientific Data 12, 88 (2025). doi:10.1038/s41597-024-04311-y"
)


@dataclass
class ImportResult:
    """A written manifest and what the importer noticed on the way."""

    manifest: Manifest
    manifest_path: Path
    warnings: list[str] = field(default_factory=list)


def _one_hot_name(row: pd.Series, columns: tuple[str, ...]) -> list[str]:
    return [c for c in columns if str(row.get(c, "0")).strip() in ("1", "1.0")]


def _find_file(folder: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def assign_consecutive_groups(keys: list[tuple], prefix: str = "g") -> list[str]:
    """Give consecutive rows with equal keys one group id.

    BTXRD has no patient ids; consecutive images with the same centre, age, sex and diagnosis
    are most likely one patient (several views, follow-up), so they form one group.

    Args:
        keys: one hashable key per row, in file order.
        prefix: prefix of the ids.

    Returns:
        One id per row, e.g. ``g00001``.

    Example:
        >>> assign_consecutive_groups([(1, "a"), (1, "a"), (2, "a"), (1, "a")])
        ['g00001', 'g00001', 'g00002', 'g00003']
    """
    ids: list[str] = []
    n = 0
    previous = object()
    for key in keys:
        if key != previous:
            n += 1
            previous = key
        ids.append(f"{prefix}{n:05d}")
    return ids


def import_btxrd(src: str | Path, out: str | Path) -> ImportResult:
    """Build a manifest for BTXRD (the 256-px copy or the original release).

    Args:
        src: folder with ``dataset.csv`` (or ``dataset.xlsx`` converted to CSV), ``images/``
            and optionally ``masks/``.
        out: folder to write ``manifest.csv`` and ``dataset.json`` to.

    Returns:
        The import result; paths in the manifest are relative to ``out``.

    Raises:
        ManifestError: ``dataset.csv`` or ``images/`` is missing, or a column is missing.
    """
    src, out = Path(src), Path(out)
    table = src / "dataset.csv"
    if not table.is_file():
        raise ManifestError(f"{table}: not found; expected the BTXRD folder with dataset.csv, images/, masks/")
    images_dir = src / "images"
    if not images_dir.is_dir():
        raise ManifestError(f"{images_dir}: images folder not found")
    masks_dir = src / "masks"
    frame = read_text_table(table, "BTXRD table", ManifestError)
    needed = ("image_id", "center", "age", "gender", "tumor", "benign", "malignant", *SUBTYPES, *BTXRD_VIEWS)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ManifestError(f"{table}: missing BTXRD column(s): {', '.join(missing)}")
    frame["_order"] = frame["image_id"].str.extract(r"(\d+)", expand=False).astype(float)
    frame = frame.sort_values("_order", kind="stable").reset_index(drop=True)

    out.mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []
    rows: list[dict] = []
    for _, row in frame.iterrows():
        stem = Path(row["image_id"]).stem
        image = _find_file(images_dir, stem)
        if image is None:
            warnings.append(f"{row['image_id']}: no file images/{stem}.* (kept; verify will report it)")
            image = images_dir / f"{stem}.png"
        if row["tumor"].strip() in ("1", "1.0"):
            label = "malignant" if row["malignant"].strip() in ("1", "1.0") else "benign"
        else:
            label = "normal"
        subtypes = _one_hot_name(row, tuple(SUBTYPES))
        if len(subtypes) > 1:
            warnings.append(f"{row['image_id']}: several subtypes {subtypes}; kept the first, {subtypes[0]!r}")
        mask = _find_file(masks_dir, stem) if masks_dir.is_dir() else None
        rows.append(
            {
                "case_id": stem,
                "image": relative_to(image, out),
                "mask": relative_to(mask, out) if mask else None,
                "label": label,
                "subtype": subtypes[0] if subtypes else None,
                "age": row["age"] or None,
                "sex": row["gender"] or None,
                "site": ";".join(_one_hot_name(row, BTXRD_SITES)) or None,
                "region": ";".join(_one_hot_name(row, BTXRD_REGIONS)) or None,
                "view": ";".join(_one_hot_name(row, BTXRD_VIEWS)) or None,
                "centre": str(row["center"]).strip() or None,
            }
        )
    keys = [(r["centre"], r["age"], r["sex"], r["label"], r["subtype"]) for r in rows]
    for r, gid in zip(rows, assign_consecutive_groups(keys, prefix="btxrd-g")):
        r["group_id"] = gid
    cases = [Case(**r) for r in rows]
    manifest = Manifest(cases=cases, root=out.resolve())
    path = manifest.save(out / "manifest.csv")
    _write_description(
        out,
        manifest,
        name="BTXRD",
        source=str(src.resolve()),
        licence="CC BY-NC-ND 4.0 (research, non-commercial, no derivatives)",
        citation=BTXRD_CITATION,
        grouping="no patient ids in BTXRD: consecutive images with the same centre, age, sex, "
        "label and subtype form one group",
        warnings=warnings,
    )
    return ImportResult(manifest=manifest, manifest_path=path, warnings=warnings)


def import_folder(
    images: str | Path,
    labels: str | Path,
    out: str | Path,
    masks: str | Path | None = None,
    image_column: str = "image",
    group_column: str | None = None,
) -> ImportResult:
    """Build a manifest from a folder of images and a CSV of labels.

    The CSV has one row per image with a column naming the image file (relative to
    ``images``), and any of ``label``, ``subtype``, ``age``, ``sex``, ``site``, ``region``,
    ``view``, ``centre`` and a patient column (``patient_id`` or ``group_id``, or the one named
    by ``group_column``). Masks are matched by file stem in ``masks``.

    Args:
        images: folder of images.
        labels: CSV of labels.
        out: folder for ``manifest.csv`` and ``dataset.json``.
        masks: optional folder of masks named like the images.
        image_column: the CSV column holding the image file name.
        group_column: the CSV column holding the patient id; without one each image is its
            own group (a warning says that splits then cannot prevent patient leakage).

    Returns:
        The import result.

    Raises:
        ManifestError: a folder or column is missing, a label value is unknown, or two rows
            name the same case.
    """
    images, labels, out = Path(images), Path(labels), Path(out)
    if not images.is_dir():
        raise ManifestError(f"{images}: images folder not found")
    frame = read_text_table(labels, "labels", ManifestError)
    if image_column not in frame.columns:
        raise ManifestError(f"{labels}: no column {image_column!r}; found {', '.join(frame.columns)}")
    if group_column is None:
        group_column = next((c for c in ("patient_id", "group_id") if c in frame.columns), None)
    elif group_column not in frame.columns:
        raise ManifestError(f"{labels}: no group column {group_column!r}")
    warnings: list[str] = []
    if group_column is None:
        warnings.append(
            f"{labels}: no patient_id/group_id column; each image is its own group, so splits "
            "cannot keep one patient's images together"
        )
    masks_dir = Path(masks) if masks else None
    if masks_dir is not None and not masks_dir.is_dir():
        raise ManifestError(f"{masks_dir}: masks folder not found")
    out.mkdir(parents=True, exist_ok=True)
    optional = ("label", "subtype", "age", "sex", "site", "region", "view", "centre")
    rows = []
    for i, row in frame.iterrows():
        name = row[image_column].strip()
        if not name:
            raise ManifestError(f"{labels}, line {i + 2}: empty {image_column!r}")
        image = images / name
        label = row.get("label", "").strip().lower() or None
        if label is not None and label not in LABELS:
            raise ManifestError(f"{labels}, line {i + 2}: label {label!r} is not one of {', '.join(LABELS)}")
        mask = _find_file(masks_dir, Path(name).stem) if masks_dir else None
        record = {k: (row[k].strip() or None) for k in optional if k in frame.columns}
        record.update(
            case_id=row["case_id"].strip() if "case_id" in frame.columns else Path(name).stem,
            group_id=(row[group_column].strip() if group_column else "") or Path(name).stem,
            image=relative_to(image, out),
            mask=relative_to(mask, out) if mask else None,
            label=label,
        )
        rows.append(record)
    repeated = repeated_rows([r["case_id"] for r in rows], "case")
    if repeated:
        raise ManifestError(f"{labels}: {repeated}; keep one row per image")
    absent = [r["case_id"] for r in rows if not (out / r["image"]).is_file()]
    if absent:
        warnings.append(f"{labels}: {len(absent)} row(s) name an image not in {images} (e.g. {absent[0]}); "
                        "osteolens data verify lists them as missing files")
    listed = {Path(r["image"]).name for r in rows}
    unlisted = sorted(p.name for p in images.iterdir() if p.is_file() and p.name not in listed)
    if unlisted:
        warnings.append(f"{images}: {len(unlisted)} file(s) not in the labels CSV, left out (e.g. {unlisted[0]})")
    manifest = Manifest(cases=[Case(**r) for r in rows], root=out.resolve())
    path = manifest.save(out / "manifest.csv")
    _write_description(
        out, manifest, name=images.name, source=str(images.resolve()), licence="as set by the data owner",
        citation=None, grouping=f"column {group_column!r}" if group_column else "one group per image",
        warnings=warnings,
    )
    return ImportResult(manifest=manifest, manifest_path=path, warnings=warnings)


def _write_description(out: Path, manifest: Manifest, *, name, source, licence, citation, grouping, warnings):
    frame = manifest.to_frame()
    description = {
        "name": name,
        "source": source,
        "licence": licence,
        "citation": citation,
        "grouping": grouping,
        "n_cases": len(frame),
        "n_groups": int(frame["group_id"].nunique()),
        "labels": {k: int(v) for k, v in frame["label"].value_counts().items()},
        "centres": {str(k): int(v) for k, v in frame["centre"].value_counts().items()},
        "warnings": warnings,
        "written_by": f"osteolens {__version__}",
    }
    (out / "dataset.json").write_text(json.dumps(description, indent=2) + "\n")
