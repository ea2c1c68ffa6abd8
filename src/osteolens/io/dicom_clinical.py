"""What a DICOM radiograph's header says of the patient and the exposure, as the model's clinical inputs.

A radiograph from a PACS carries the patient's age and sex, the body part and the view. The model's
clinical inputs (:func:`osteolens.data.clinical.encode_clinical`) are read from these attributes where a
clinical table gives no value:

- age: Patient's Age (0010,1010), ``048Y``, ``006M``, ``010W`` or ``020D``; else the years between
  Patient's Birth Date (0010,0030) and the Study, Acquisition or Content Date;
- sex: Patient's Sex (0010,0040), ``M`` or ``F`` (``O`` says nothing the model can use);
- region: Body Part Examined (0018,0015), else the code meaning of the Anatomic Region Sequence
  (0008,2218): a limb bone or joint, ``LEG``, ``ARM``, ``HIP`` or ``PELVIS`` (``EXTREMITY``, ``CHEST``
  or a spine name: no region the model knows);
- view: View Position (0018,5101): ``AP`` and ``PA`` frontal, ``LL``, ``RL`` and ``LAT`` lateral, ``RLO``,
  ``LLO`` and the anterior or posterior obliques oblique (decubitus views: none); else the code meaning
  of the View Code Sequence (0054,0220).

Two more fields are read for reading a study's views together (:mod:`osteolens.inference.study`), never
as model inputs:

- body_part: Body Part Examined as written (``KNEE``), else the Anatomic Region Sequence's code meaning;
- laterality: Image Laterality (0020,0062), else the series' Laterality (0020,0060): ``L``, ``R`` or
  ``B`` (both; ``U``, unpaired, says no side).

A value that does not read (a damaged age, a birth date after the study) is left out, and the
analysis goes on without it, as it does for a missing one: the header is advice, not an input the
user typed.
"""

from __future__ import annotations

import datetime as dt
import re

from osteolens.data.clinical import region_of_site

AGE_UNITS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}
VIEW_POSITIONS = {
    "frontal": ("AP", "PA"),
    "lateral": ("LL", "RL", "LAT", "LATERAL", "ML", "LM"),
    "oblique": ("RLO", "LLO", "OBL", "OBLIQUE", "RAO", "LAO", "RPO", "LPO"),
}
#: Body Part Examined values naming a whole limb, as archives write them
LIMB_CODES = {"UPPERLIMB": "upper limb", "UPPEREXTREMITY": "upper limb", "UPRLIMB": "upper limb",
              "LOWERLIMB": "lower limb", "LOWEREXTREMITY": "lower limb", "LWRLIMB": "lower limb"}


def header_clinical(ds) -> dict[str, dict]:
    """The clinical fields a DICOM dataset's header gives, each with the attribute it was read from.

    Returns:
        ``{field: {"value": ..., "from": "..."}}`` for those of ``age`` (years), ``sex`` (``M``/``F``),
        ``region``, ``view``, ``body_part`` and ``laterality`` that the header gives and that read.

    >>> from pydicom import Dataset
    >>> ds = Dataset()
    >>> ds.PatientAge, ds.PatientSex, ds.BodyPartExamined, ds.ViewPosition = "014Y", "F", "KNEE", "LL"
    >>> ds.ImageLaterality = "L"
    >>> {k: v["value"] for k, v in header_clinical(ds).items()}
    {'age': 14.0, 'sex': 'F', 'region': 'lower limb', 'view': 'lateral', 'body_part': 'KNEE', 'laterality': 'L'}
    """
    found = {}
    for name, reader in (("age", _age), ("sex", _sex), ("region", _region), ("view", _view),
                         ("body_part", _body_part), ("laterality", _laterality)):
        read = reader(ds)
        if read is not None:
            found[name] = {"value": read[0], "from": f"DICOM {read[1]}"}
    return found


def _text(ds, keyword: str) -> str:
    try:
        value = ds.get(keyword, "")
    except Exception:  # a damaged value: the header is advice, so it is passed over
        return ""
    return str(value if value is not None else "").strip()


def _age(ds):
    text = _text(ds, "PatientAge").upper()
    match = re.fullmatch(r"(\d{1,3})\s*([DWMY]?)", text)
    if match:
        years = int(match.group(1)) * AGE_UNITS[match.group(2) or "Y"]
        if 0 <= years <= 130:
            return round(years, 2), f"Patient's Age {text!r}"
    birth = _date(_text(ds, "PatientBirthDate"))
    for keyword in ("StudyDate", "AcquisitionDate", "ContentDate"):
        seen = _date(_text(ds, keyword))
        if birth is not None and seen is not None:
            years = seen.year - birth.year - ((seen.month, seen.day) < (birth.month, birth.day))
            if 0 <= years <= 130:
                return float(years), f"Patient's Birth Date and {keyword} ({birth.isoformat()} to {seen.isoformat()})"
            return None
    return None


def _date(text: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return None


def _sex(ds):
    text = _text(ds, "PatientSex").upper()
    return (text, f"Patient's Sex {text!r}") if text in ("M", "F") else None


def _region(ds):
    text = _text(ds, "BodyPartExamined")
    region = _region_of(text)
    if region:
        return region, f"Body Part Examined {text!r}"
    meaning = _anatomic_region(ds)
    region = _region_of(meaning)
    return (region, f"Anatomic Region Sequence {meaning!r}") if region else None


def _anatomic_region(ds) -> str:
    try:
        return str(ds.AnatomicRegionSequence[0].CodeMeaning).strip() if "AnatomicRegionSequence" in ds else ""
    except (AttributeError, IndexError, TypeError):
        return ""


def _body_part(ds):
    text = _text(ds, "BodyPartExamined")
    if text:
        return text, f"Body Part Examined {text!r}"
    meaning = _anatomic_region(ds)
    return (meaning, f"Anatomic Region Sequence {meaning!r}") if meaning else None


def _laterality(ds):
    for keyword, name in (("ImageLaterality", "Image Laterality"), ("Laterality", "Laterality")):
        text = _text(ds, keyword).upper()
        if text in ("L", "R", "B"):
            return text, f"{name} {text!r}"
    return None


def _region_of(text: str) -> str | None:
    compact = re.sub(r"[^A-Z]", "", text.upper())
    if compact in LIMB_CODES:  # also "Lower limb", "upper extremity" as a code meaning writes them
        return LIMB_CODES[compact]
    region = region_of_site(text)
    return region if region and ";" not in region else None  # two regions in one body part: not a region


def _view(ds):
    text = _text(ds, "ViewPosition").upper()
    for view, codes in VIEW_POSITIONS.items():
        if text in codes:
            return view, f"View Position {text!r}"
    try:
        meaning = str(ds.ViewCodeSequence[0].CodeMeaning) if "ViewCodeSequence" in ds else ""
    except (AttributeError, IndexError, TypeError):
        meaning = ""
    words = meaning.lower()
    if "decubitus" in words:
        return None
    for view, says in (("oblique", ("oblique",)), ("lateral", ("lateral", "latero-medial", "medio-lateral")),
                       ("frontal", ("antero-posterior", "postero-anterior", "frontal"))):
        if any(w in words for w in says):
            return view, f"View Code Sequence {meaning!r}"
    return None
