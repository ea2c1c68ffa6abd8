"""One reading per study: the views of one examination read together.

A radiograph examination holds several views (frontal and lateral, often an oblique), and a
radiologist reads them together. :func:`~osteolens.inference.analyze.analyze_image` reads each
image alone; where the images of a batch name their study (a DICOM file's Study Instance UID, or a
``study`` column in the clinical table), :func:`read_studies` combines each study's analysed images:

- class probabilities: the mean of the views' calibrated log-probabilities, renormalised (their
  geometric mean). On the validation split this beat the arithmetic mean and the view with the
  highest tumour probability (``docs/radiograph_model.md``, "Reading a study's views together");
- uncertainty and label: as for one image, from those probabilities and the model's own thresholds
  (:func:`~osteolens.inference.analyze.decide_label`), so a study of one image reads as that image;
- subtype: the same mean over the views' subtype probabilities;
- which images show a lesion (a box drawn).

Images that could not be analysed are listed with the study and left out of its reading; a study
none of whose images was analysed is an ``error`` row.

Example:
    >>> import numpy as np
    >>> mean_log_probability(np.array([[0.6, 0.3, 0.1], [0.2, 0.6, 0.2]])).round(3)
    array([0.38 , 0.465, 0.155])
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from osteolens.training.calibration import normalised_entropy

STUDY_COLUMNS = ("study", "status", "error", "n_images", "images", "p_normal", "p_benign", "p_malignant", "label",
                 "subtype", "p_subtype", "uncertainty", "images_with_lesion", "failed_images", "sr_file")
COMBINE_RULE = "geometric mean of the views' calibrated probabilities (mean log-probability), renormalised"


@dataclass
class StudyReading:
    """One study's images read together."""

    study: str
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

    def row(self) -> dict:
        """The ``studies.csv`` row."""
        def r(x):
            return "" if x is None else round(x, 6)

        return {"study": self.study, "status": self.status, "error": self.error,
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
        analyses: its images' results, ``ok`` or ``error``.
        calib: the model's ``calibration`` metadata (its thresholds decide the label).
        subtype_names: the model's subtype names, in the order of its subtype head.
    """
    from osteolens.inference.analyze import choose_subtype, decide_label

    ok = [a for a in analyses if a.status == "ok"]
    reading = StudyReading(study=study, images=[a.image for a in ok], failed=[a.image for a in analyses if a.status != "ok"])
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


def read_studies(results: list, calib: dict, subtype_names: list[str]) -> list[StudyReading]:
    """One :class:`StudyReading` per study named by the results (``Analysis.study``), in order of first
    appearance; images that name no study are in none."""
    by_study: dict[str, list] = {}
    for r in results:
        if r.study:
            by_study.setdefault(r.study, []).append(r)
    return [read_study(s, members, calib, subtype_names) for s, members in by_study.items()]


def write_studies_csv(readings: list[StudyReading], path: str | Path) -> Path:
    """Write ``studies.csv`` (columns :data:`STUDY_COLUMNS`)."""
    path = Path(path)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(STUDY_COLUMNS))
        writer.writeheader()
        for reading in readings:
            writer.writerow(reading.row())
    return path
