"""What a batch analyses: the input files, their output names and their clinical data.

- :func:`collect_inputs`: files as given and the image-like files inside folders;
- :func:`unique_stems`: one output name per input, distinct even where file names repeat;
- :func:`read_clinical_csv` and :func:`clinical_for_inputs`: the ``--clinical`` table, each row
  matched to the input it names (by file name, or by as much of its path as the row gives).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from osteolens.errors import OsteolensError
from osteolens.io.images import IMAGE_SUFFIXES


def collect_inputs(inputs: list[str | Path], left_out: list[Path] | None = None,
                   output: str | Path | None = None) -> list[Path]:
    """Files as given, and the image-like files inside folders (recursively, sorted).

    Folders are walked recursively, following links to folders (each folder once, so a link loop ends).
    Inside folders a file is taken by its name: one of :data:`~osteolens.io.images.IMAGE_SUFFIXES` (no suffix
    included, as PACS exports often have none; a CD's ``DICOMDIR`` index is not an image). Hidden
    files are ignored, and so is everything under ``output`` (a batch's own output folder inside
    an input folder: a second run must not read the first one's masks and overlays as
    radiographs). A folder holding an earlier batch's output (:func:`is_batch_output`) is left
    out whole, for the same reason, and so are DICOM objects that are not images (a report, a
    presentation state, a segmentation: :func:`non_image_dicom`). The other files a folder holds, and those earlier output
    folders, are appended to ``left_out`` when a list is given, so that a caller can say what it
    did not read. A file given by its own path is always taken (a missing or unreadable one
    becomes an error row).

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> for name in ("a.png", "b", "notes.txt", ".hidden.png", "DICOMDIR"):
        ...     _ = (d / name).write_bytes(b"")
        >>> (d / "run").mkdir(); _ = (d / "run" / "predictions.csv").write_text(",".join(BATCH_OUTPUT_HEADER))
        >>> _ = (d / "run" / "a_overlay.png").write_bytes(b"")
        >>> skipped = []
        >>> [f.name for f in collect_inputs([d], skipped)], [f.name for f in skipped]
        (['a.png', 'b'], ['DICOMDIR', 'notes.txt', 'run'])
    """
    files: list[Path] = []
    own = Path(output).resolve() if output is not None else None
    for item in inputs:
        p = Path(item)
        if not p.is_dir():
            files.append(p)  # a missing file becomes an error row
            continue
        found, skipped, seen = [], [], set()
        for folder, subfolders, names in os.walk(p, followlinks=True):
            folder = Path(folder)
            real = folder.resolve()
            if real in seen or (own is not None and real.is_relative_to(own)):
                subfolders[:] = []  # a linked folder already walked (or a link loop), or our own output
                continue
            seen.add(real)
            if is_batch_output(folder):
                skipped.append(folder)
                subfolders[:] = []
                continue
            for name in names:
                f = folder / name
                if name.startswith(".") or not (f.is_file() or f.is_symlink()):
                    continue  # a broken link is kept: its error row says where it points
                if f.suffix.lower() in IMAGE_SUFFIXES and name.upper() != "DICOMDIR" and not non_image_dicom(f):
                    found.append(f)
                else:
                    skipped.append(f)
        files += sorted(found)
        if left_out is not None:
            left_out += sorted(skipped)
    return files


#: SOP classes whose objects hold no picture to read (structured reports and key objects, presentation states,
#: segmentations, registrations and raw data, RT objects, encapsulated documents), by UID prefix
NON_IMAGE_SOP_PREFIXES = ("1.2.840.10008.5.1.4.1.1.88.", "1.2.840.10008.5.1.4.1.1.11.", "1.2.840.10008.5.1.4.1.1.66",
                          "1.2.840.10008.5.1.4.1.1.481.", "1.2.840.10008.5.1.4.1.1.104.")


def non_image_dicom(path: Path) -> str:
    """The SOP class name of a DICOM file that is not an image (a report, a segmentation, ...), else ``""``.

    Only the file's meta header is read, or, for a file without one (a bare dataset, as older
    exporters write), the dataset's own SOP Class UID. A file that is not DICOM, or whose header does
    not read, gives ``""``: it is taken, and its error row says what is wrong with it.
    """
    if path.suffix.lower() not in (".dcm", ".dicom", ""):
        return ""
    from pydicom.filereader import read_file_meta_info

    from osteolens.io.dicom import dicom_header_value

    try:
        sop = read_file_meta_info(path).get("MediaStorageSOPClassUID")
    except Exception:  # no DICM preamble: a bare dataset, or not DICOM at all
        sop = None
    if sop is None:  # not DICOM or damaged gives None: the reader names the problem on its row
        sop = dicom_header_value(path, "SOPClassUID")
    return (sop.name or str(sop)) if sop and str(sop).startswith(NON_IMAGE_SOP_PREFIXES) else ""


#: the first columns of the ``predictions.csv`` an analysis writes, which mark its folder as a batch output
BATCH_OUTPUT_HEADER = ("image", "status", "error", "p_normal", "p_benign", "p_malignant")


def is_batch_output(folder: Path) -> bool:
    """Whether ``folder`` holds a batch's output (a ``predictions.csv`` starting with :data:`BATCH_OUTPUT_HEADER`).

    Its masks, overlays and DICOM objects are osteolens's drawings, not radiographs.
    """
    try:
        with open(Path(folder) / "predictions.csv", encoding="utf-8", errors="replace") as fh:
            return fh.readline().strip().split(",")[: len(BATCH_OUTPUT_HEADER)] == list(BATCH_OUTPUT_HEADER)
    except OSError:
        return False


def no_images_message(inputs: list[str | Path], left_out: list[Path]) -> str:
    """Why a batch has nothing to analyse: the inputs, and what their folders held instead."""
    names = ", ".join(str(i) for i in inputs) or "(no inputs)"
    msg = f"no radiographs to analyse in {names}: folders are searched for {', '.join(sorted(s for s in IMAGE_SUFFIXES if s))} files and files without a suffix"
    return msg + (f"; {left_out_note(left_out)}" if left_out else "")


def left_out_note(left_out: list[Path], show: int = 5) -> str:
    """One line naming what :func:`collect_inputs` left out of folders (the first ``show`` of each kind)."""
    outputs = [p for p in left_out if p.is_dir()]
    objects = [p for p in left_out if not p.is_dir() and p.suffix.lower() in IMAGE_SUFFIXES and p.name.upper() != "DICOMDIR"]
    others = [p for p in left_out if not p.is_dir() and p not in objects]
    parts = []
    if others:
        parts.append(f"left out {len(others)} file(s) in the folders that are not images by their name ({_first(others, show)})")
    if objects:
        kinds = sorted({non_image_dicom(p) for p in objects})
        parts.append(f"left out {len(objects)} DICOM object(s) that are not images ({', '.join(kinds)}: {_first(objects, show)})")
    if outputs:
        parts.append(f"left out {len(outputs)} folder(s) holding an earlier analysis's output, whose masks and overlays are "
                     f"not radiographs ({_first(outputs, show)})")
    return "; ".join(parts) + "; give a file by its path to try it anyway"


def unused_rows_note(unused: list[str], show: int = 5) -> str:
    """One line naming the clinical rows that :func:`clinical_for_inputs` matched to no input."""
    return f"{len(unused)} clinical row(s) name no input ({_first(unused, show)})"


def _first(items: list, show: int) -> str:
    return ", ".join(str(i) for i in items[:show]) + (", ..." if len(items) > show else "")


def unique_stems(files: list[Path]) -> list[str]:
    """One output stem per input (``masks/<stem>.png``, ``<stem>.json``), no two alike.

    A repeated stem gets ``_1``, ``_2``, ... (the first free one), compared without case, since a
    folder on Windows or macOS holds ``IMG.png`` and ``img.png`` as one file.

    >>> unique_stems([Path("a/img.png"), Path("b/img.png"), Path("img_1.dcm"), Path("IMG.jpg")])
    ['img', 'img_1', 'img_1_1', 'IMG_2']
    """
    taken: set[str] = set()
    stems = []
    for f in files:
        base = stem = f.stem or f.name
        n = 0
        while stem.casefold() in taken:
            n += 1
            stem = f"{base}_{n}"
        taken.add(stem.casefold())
        stems.append(stem)
    return stems


def read_clinical_csv(path: str | Path) -> dict[str, dict]:
    """``image, age, sex, site[, region, view, study]`` rows keyed by their ``image`` value (``study``
    names the examination an image belongs to; :mod:`osteolens.inference.study` reads its images together).

    The ``image`` value is a file name, or a path (relative to any folder, ``/`` or ``\\``
    separated) where names repeat in a batch. Each row also carries ``_where`` (the file and
    line) for messages.

    Raises:
        OsteolensError: the file is not a readable CSV, has no ``image`` column, or has rows
            without an image or two rows for the same image.
    """
    from osteolens.io.tables import read_text_table, repeated_rows  # only here: it imports pandas

    path = Path(path)
    table = read_text_table(path, "clinical data")
    if "image" not in table.columns:
        raise OsteolensError(f"{path}: needs an 'image' column; found {', '.join(table.columns)}")
    records = table.to_dict(orient="records")
    keys = [_path_key(r["image"]) for r in records]
    if "" in keys:
        raise OsteolensError(f"{path}: line {keys.index('') + 2} has no image name")
    repeated = repeated_rows(keys, "image")
    if repeated:
        raise OsteolensError(f"{path}: {repeated}; keep one row per image, naming it by its path where file names repeat")
    return {key: {**{k: (v.strip() or None) for k, v in r.items()}, "_where": f"{path.name} line {line}"}
            for line, (key, r) in enumerate(zip(keys, records), start=2)}


def clinical_for_inputs(files: list[Path], clinical: dict[str, dict]) -> tuple[list[dict | str | None], list[str]]:
    """Each input's clinical row, and the rows that name no input.

    A row names an input when its ``image`` value is the file's name or the end of its path
    (``b/img.png`` names ``/data/b/img.png``); the row naming most of the path wins. A row that
    is the best match for two different files cannot tell them apart, and both get a message
    instead of a row.

    Args:
        files: the batch's inputs (:func:`collect_inputs`).
        clinical: rows keyed by image name or path (:func:`read_clinical_csv`).

    Returns:
        ``(per_file, unused)``: for each file its row, ``None`` (no row) or a message (str) saying
        why its row is ambiguous; and the keys of the rows used by no input.

    >>> rows = {"img.png": {"age": "30"}, "b/img.png": {"age": "70"}, "c.png": {"age": "5"}}
    >>> clinical_for_inputs([Path("a/img.png"), Path("b/img.png"), Path("d.png")], rows)
    ([{'age': '30'}, {'age': '70'}, None], ['c.png'])
    """
    keys = {k: PurePosixPath(_path_key(k)).parts for k in clinical}
    best: list[str | None] = []
    for f in files:
        parts = f.absolute().parts
        found = [k for k, kp in keys.items() if parts[-len(kp):] == kp]
        best.append(max(found, key=lambda k: len(keys[k])) if found else None)
    owners: dict[str, set[Path]] = {}
    for f, k in zip(files, best):
        if k is not None:
            owners.setdefault(k, set()).add(f.resolve())
    per_file: list[dict | str | None] = []
    for f, k in zip(files, best):
        if k is None:
            per_file.append(None)
        elif len(owners[k]) > 1:
            per_file.append(f"the clinical row for {k!r} names {len(owners[k])} different inputs; "
                            "give each its path (e.g. folder/name) in the image column")
        else:
            per_file.append(clinical[k])
    return per_file, [k for k in clinical if k not in owners]


def _path_key(value: str) -> str:
    """An ``image`` value as a ``/``-separated path without ``./`` or surrounding blanks."""
    value = value.strip().replace("\\", "/")
    return str(PurePosixPath(value)) if value else ""
