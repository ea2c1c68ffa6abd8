"""One reading per study: the views of one examination read together.

A radiograph examination holds several views (frontal and lateral, often an oblique), and a
radiologist reads them together. :func:`~osteolens.inference.analyze.analyze_image` reads each
image alone; where the images of a batch name their study (a DICOM file's Study Instance UID, or a
``study`` column in the clinical table), :func:`read_studies` combines each study's analysed images
that show one body part on one side (:func:`view_anatomy`): a comparison film of the other knee, or the
other bones of a skeletal survey, are read apart from the tumour's views, not averaged into them:

- class probabilities: the mean of the views' calibrated log-probabilities, renormalised (their
  geometric mean). On the validation split this beat the arithmetic mean and the view with the
  highest tumour probability (``docs/radiograph_model.md``, "Reading a study's views together");
- uncertainty and label: as for one image, from those probabilities and the model's own thresholds
  (:func:`~osteolens.inference.analyze.decide_label`), so a study of one image reads as that image;
- subtype: the same mean over the views' subtype probabilities;
- which images show a lesion (a box drawn).

Images that could not be analysed are listed with each reading of their study and left out of it; a
study none of whose images was analysed is an ``error`` row.

Example:
    >>> import numpy as np
    >>> mean_log_probability(np.array([[0.6, 0.3, 0.1], [0.2, 0.6, 0.2]])).round(3)
    array([0.38 , 0.465, 0.155])
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from osteolens.training.calibration import normalised_entropy

STUDY_COLUMNS = ("study", "body_part", "laterality", "status", "error", "n_images", "images", "p_normal", "p_benign", "p_malignant", "label",
                 "subtype", "p_subtype", "uncertainty", "images_with_lesion", "failed_images", "sr_file")
COMBINE_RULE = ("geometric mean of the calibrated probabilities of the views of one body part and side "
                "(mean log-probability), renormalised")
#: how a clinical table may write a side (case-insensitive), and the DICOM code it stands for
SIDES = {"l": "L", "left": "L", "r": "R", "right": "R", "b": "B", "both": "B", "bilateral": "B"}


def view_anatomy(given: dict | None, header: dict | None) -> dict[str, dict]:
    """The body part and side an image shows, each with where it came from; views are read together only
    where both agree (:func:`reading_key`).

    Args:
        given: a clinical table's row (``site``, ``region``, ``laterality``; ``_where`` names its line), or None.
        header: what the image's DICOM header says (:func:`osteolens.io.dicom_clinical.header_clinical`), or None.

    Returns:
        ``{"body_part": {"value", "from"}, "laterality": {"value", "from"}}`` for those known. The body part
        is the given site, else the header's body part, else the region (given, else the header's); the side
        is the given laterality (``L``, ``R``, ``B``; ``left``, ``right``, ``both``), else the header's.

    Raises:
        ValueError: a given laterality that names no side.

    >>> view_anatomy({"site": "distal femur", "laterality": "left", "_where": "c.csv line 2"}, None)
    {'body_part': {'value': 'distal femur', 'from': 'c.csv line 2'}, 'laterality': {'value': 'L', 'from': 'c.csv line 2'}}
    >>> view_anatomy({}, {"body_part": {"value": "KNEE", "from": "DICOM Body Part Examined 'KNEE'"}})["body_part"]["value"]
    'KNEE'
    """
    given, header = given or {}, header or {}
    where = given.get("_where") or "given"

    def stated(name: str) -> dict | None:
        value = str(given.get(name) or "").strip()
        return {"value": value, "from": where} if value else None

    found = {}
    part = stated("site") or header.get("body_part") or stated("region") or header.get("region")  # most specific first
    if part:
        found["body_part"] = dict(part)
    side = str(given.get("laterality") or "").strip()
    if side:
        if side.lower() not in SIDES:
            raise ValueError(f"laterality {side!r} names no side (L, R or B; left, right or both)")
        found["laterality"] = {"value": SIDES[side.lower()], "from": where}
    elif "laterality" in header:
        found["laterality"] = dict(header["laterality"])
    return found


def side_and_part(laterality: str, body_part: str) -> str:
    """How a reading's side and body part are shown: ``L KNEE``, ``KNEE``, or empty where neither is known."""
    return " ".join(x for x in (laterality, body_part) if x)


def reading_key(study: str, anatomy: dict) -> tuple[str, str, str]:
    """``(study, body part, side)``: views with one key are read together. The body part is compared in lower
    case, letters only (``KNEE`` and ``Knee`` agree); an unknown part or side is one value of its own.

    >>> reading_key("s1", {"body_part": {"value": "Knee"}}) == reading_key("s1", {"body_part": {"value": "KNEE"}})
    True
    """
    part, side = part_and_side(anatomy)
    return study, re.sub(r"[^a-z]", "", part.lower()), side


@dataclass
class StudyReading:
    """One study's images read together."""

    study: str
    #: the body part and side its views show (:func:`view_anatomy`; empty where none is known)
    body_part: str = ""
    laterality: str = ""
    images: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    status: str = "ok"
    error: str = ""
    p_normal: float | None = None
    p_benign: float | None = None
    p_malignant: float | None = None
    label: str = ""
    subtype: str = ""
    p_subtype: float | None = None
    uncertainty: float | None = None
    with_lesion: list = field(default_factory=list)
    #: the study's SR (``study_dicom/<n>_sr.dcm``), where ``--dicom-out`` wrote one (DICOM studies of two or more views)
    sr_file: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        """:func:`reading_key` of its views."""
        return reading_key(self.study, {"body_part": {"value": self.body_part}, "laterality": {"value": self.laterality}})

    @property
    def title(self) -> str:
        """The study and, where known, the side and body part its views show: ``s1``, ``s1, L KNEE``."""
        return ", ".join(x for x in (self.study, side_and_part(self.laterality, self.body_part)) if x)

    def row(self) -> dict:
        """The ``studies.csv`` row."""
        def r(x):
            return "" if x is None else round(x, 6)

        return {"study": self.study, "body_part": self.body_part, "laterality": self.laterality, "status": self.status, "error": self.error,
                "n_images": len(self.images) + len(self.failed), "images": ";".join(self.images),
                "p_normal": r(self.p_normal), "p_benign": r(self.p_benign), "p_malignant": r(self.p_malignant),
                "label": self.label, "subtype": self.subtype, "p_subtype": r(self.p_subtype),
                "uncertainty": r(self.uncertainty), "images_with_lesion": ";".join(self.with_lesion),
                "failed_images": ";".join(self.failed), "sr_file": self.sr_file}


def mean_log_probability(probs: np.ndarray) -> np.ndarray:
    """The renormalised geometric mean of the rows of ``probs`` (views x classes)."""
    logs = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)).mean(axis=0)
    combined = np.exp(logs - logs.max())
    return combined / combined.sum()


def read_study(study: str, analyses: list, calib: dict, subtype_names: list[str]) -> StudyReading:
    """Combine one study's analyses (:class:`~osteolens.inference.analyze.Analysis`) into one reading.

    Args:
        study: the study's identifier.
        analyses: its images' results, ``ok`` or ``error``; those ``ok`` show one body part on one side.
        calib: the model's ``calibration`` metadata (its thresholds decide the label).
        subtype_names: the model's subtype names, in the order of its subtype head.

    Raises:
        ValueError: analysed views of different body parts or sides (:func:`reading_key`), named.
    """
    from osteolens.inference.analyze import choose_subtype, decide_label

    ok = [a for a in analyses if a.status == "ok"]
    keys = {reading_key(study, a.anatomy) for a in ok}
    if len(keys) > 1:
        shown = "; ".join(f"{a.image}: {_anatomy_text(a.anatomy)}" for a in ok)
        raise ValueError(f"views of different body parts or sides are not read together ({shown})")
    part, side = part_and_side(ok[0].anatomy if ok else {})
    reading = StudyReading(study=study, images=[a.image for a in ok], failed=[a.image for a in analyses if a.status != "ok"],
                           body_part=part, laterality=side)
    if not ok:
        reading.status, reading.error = "error", "none of the study's images could be analysed"
        return reading
    probs = mean_log_probability([[a.p_normal, a.p_benign, a.p_malignant] for a in ok])
    uncertainty = float(normalised_entropy(probs))
    label = decide_label(probs, uncertainty, calib)
    subtype, p_sub = "", None
    if label != "normal":
        sub = mean_log_probability([[a.subtype_probabilities.get(n, 0.0) for n in subtype_names] for a in ok])
        subtype, p_sub = choose_subtype(sub, subtype_names, ("benign", "malignant")[int(probs[2] > probs[1])])
    reading.p_normal, reading.p_benign, reading.p_malignant = (float(p) for p in probs)
    reading.label, reading.uncertainty, reading.subtype, reading.p_subtype = label, uncertainty, subtype, p_sub
    reading.with_lesion = [a.image for a in ok if a.boxes]
    return reading


def part_and_side(anatomy: dict) -> tuple[str, str]:
    """The body part and side of an image's ``anatomy`` (:func:`view_anatomy`), ``""`` where not known."""
    return tuple(str(anatomy.get(k, {}).get("value", "")) for k in ("body_part", "laterality"))


def _anatomy_text(anatomy: dict) -> str:
    part, side = part_and_side(anatomy)
    return side_and_part(side, part) or "body part and side not given"


def read_studies(results: list, calib: dict, subtype_names: list[str]) -> list[StudyReading]:
    """One :class:`StudyReading` per study named by the results (``Analysis.study``) and body part and side
    (:func:`reading_key`), in order of first appearance; images that name no study are in none. An image
    that could not be analysed is listed with each reading of its study."""
    analysed: dict[tuple, list] = {}
    failed: dict[str, list] = {}
    for r in results:
        if r.study and r.status == "ok":
            analysed.setdefault(reading_key(r.study, r.anatomy), []).append(r)
        elif r.study:
            failed.setdefault(r.study, []).append(r)
    readings = []
    for study in dict.fromkeys(r.study for r in results if r.study):
        keys = [k for k in analysed if k[0] == study] or [None]
        readings += [read_study(study, analysed.get(k, []) + failed.get(study, []), calib, subtype_names) for k in keys]
    return readings


def write_studies_csv(readings: list[StudyReading], path: str | Path) -> Path:
    """Write ``studies.csv`` (columns :data:`STUDY_COLUMNS`)."""
    path = Path(path)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(STUDY_COLUMNS))
        writer.writeheader()
        for reading in readings:
            writer.writerow(reading.row())
    return path
