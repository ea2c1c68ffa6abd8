"""The dataset manifest: one CSV row per case, the single description of a dataset.

Columns (see ``docs/manifest.md``):

=========== ======== ==========================================================
column      required meaning
=========== ======== ==========================================================
case_id     yes      unique id of the image (case)
group_id    yes      patient or patient-like group; splits never cut a group
image       yes      image path, relative to the manifest's folder or absolute
mask        no       binary tumour mask path (same size as the image)
label       no       ``normal``, ``benign`` or ``malignant``
subtype     no       histological subtype (see ``SUBTYPES``), empty for normal
age         no       years
sex         no       ``M`` or ``F``
site        no       anatomical site(s), ``;``-separated
region      no       ``upper limb``, ``lower limb``, ``pelvis``, ...
view        no       ``frontal``, ``lateral``, ``oblique``
centre      no       acquiring centre, for external validation
=========== ======== ==========================================================

Example:
    >>> from osteolens.data.manifest import load_manifest
    >>> m = load_manifest("data/btxrd/manifest.csv")            # doctest: +SKIP
    >>> m.resolve(m.cases[0].image)                              # doctest: +SKIP
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from osteolens.errors import ManifestError, validation_message
from osteolens.io.tables import read_text_table

LABELS: tuple[str, ...] = ("normal", "benign", "malignant")

#: BTXRD's nine subtypes and the class each belongs to.
SUBTYPES: dict[str, str] = {
    "osteochondroma": "benign",
    "multiple osteochondromas": "benign",
    "simple bone cyst": "benign",
    "giant cell tumor": "benign",
    "osteofibroma": "benign",
    "synovial osteochondroma": "benign",
    "other bt": "benign",
    "osteosarcoma": "malignant",
    "other mt": "malignant",
}

COLUMNS: tuple[str, ...] = (
    "case_id", "group_id", "image", "mask", "label", "subtype",
    "age", "sex", "site", "region", "view", "centre",
)
REQUIRED: tuple[str, ...] = ("case_id", "group_id", "image")


class Case(BaseModel):
    """One row of a manifest. Paths are kept as written; ``Manifest.resolve`` makes them usable."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    case_id: str
    group_id: str
    image: str
    mask: str | None = None
    label: str | None = None
    subtype: str | None = None
    age: float | None = None
    sex: str | None = None
    site: str | None = None
    region: str | None = None
    view: str | None = None
    centre: str | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if isinstance(value, str) and value.strip() == "":
            return None
        return value

    @field_validator("case_id", "group_id", "image", "centre", mode="before")
    @classmethod
    def _as_text(cls, value):
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return None if value is None else str(value)

    @field_validator("age")
    @classmethod
    def _age_range(cls, value):
        if value is not None and not 0 <= value <= 130:
            raise ValueError(f"age {value} is outside 0-130 years")
        return value

    @property
    def sites(self) -> list[str]:
        """The anatomical sites as a list (empty when unknown)."""
        return [s for s in (self.site or "").split(";") if s]


@dataclass
class Manifest:
    """A list of cases and the folder relative paths are resolved against."""

    cases: list[Case]
    root: Path
    source: Path | None = None
    row_errors: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.cases)

    def resolve(self, path: str | None) -> Path | None:
        """Return an absolute path for a manifest path (``None`` stays ``None``)."""
        if path is None:
            return None
        p = Path(path)
        return Path(os.path.normpath(p if p.is_absolute() else self.root / p))

    def to_frame(self) -> pd.DataFrame:
        """Return the cases as a DataFrame with the manifest's columns."""
        return pd.DataFrame([c.model_dump() for c in self.cases], columns=list(COLUMNS))

    def by_id(self) -> dict[str, Case]:
        """Map case id to case."""
        return {c.case_id: c for c in self.cases}

    def save(self, path: str | Path) -> Path:
        """Write the manifest as CSV; paths are written as stored."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.to_frame().to_csv(path, index=False, quoting=csv.QUOTE_MINIMAL)
        return path


def relative_to(path: Path, start: Path) -> str:
    """A path written relative to ``start`` when possible (keeps manifests movable with data)."""
    try:
        return os.path.relpath(Path(path).resolve(), Path(start).resolve())
    except ValueError:  # different drives
        return str(Path(path).resolve())


def load_manifest(path: str | Path, strict: bool = True) -> Manifest:
    """Load a manifest CSV.

    Args:
        path: the CSV file.
        strict: raise on the first malformed row; when ``False`` malformed rows are left out
            and listed in ``Manifest.row_errors`` (``osteolens data verify`` uses this so that
            it can report every problem).

    Returns:
        The manifest, with ``root`` set to the CSV's folder.

    Raises:
        ManifestError: the file is missing, not CSV, lacks a required column, or (strict) a
            row is malformed.
    """
    path = Path(path)
    frame = read_text_table(path, "manifest", ManifestError)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ManifestError(
            f"{path}: missing required column(s) {', '.join(missing)}; found {', '.join(frame.columns)}"
        )
    unknown = [c for c in frame.columns if c not in COLUMNS]
    if unknown:
        raise ManifestError(f"{path}: unknown column(s) {', '.join(unknown)}; allowed: {', '.join(COLUMNS)}")
    cases: list[Case] = []
    errors: list[tuple[int, str]] = []
    for i, row in enumerate(frame.to_dict(orient="records")):
        line = i + 2  # header is line 1
        try:
            cases.append(Case(**row))
        except ValidationError as exc:
            msg = validation_message(exc)
            if strict:
                raise ManifestError(f"{path}, line {line}: {msg}") from exc
            errors.append((line, msg))
    return Manifest(cases=cases, root=path.parent.resolve(), source=path, row_errors=errors)
