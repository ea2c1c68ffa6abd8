"""Clinical context as a model input: age, sex, body region and view.

The anatomical *site* is deliberately not used: in BTXRD it is annotated for every tumour image
and for no normal image, so a model given the site would read the label from it. Where a user
gives a site and no region, the region is read from the site (:func:`region_of_site`): every
radiograph has a region, so that carries no label.

Missing values get neutral codes (age 0.35, the training median / 100; sex 0.5; region and view
all zero) and a flag, and :func:`encode_clinical` reports them.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from osteolens.io.tables import decimal_number

REGIONS = ("upper limb", "lower limb", "pelvis")
VIEWS = ("frontal", "lateral", "oblique")
CLINICAL_FEATURES = ("age_decades_scaled", "age_missing", "sex_male", *[f"region={r}" for r in REGIONS], *[f"view={v}" for v in VIEWS])
N_CLINICAL = len(CLINICAL_FEATURES)
#: words of an anatomical site, and the body region of a radiograph showing it (BTXRD's regions)
SITE_WORDS = {
    "upper limb": ("hand", "hands", "finger", "fingers", "thumb", "metacarpal", "metacarpals", "carpal", "carpus",
                   "wrist", "scaphoid", "radius", "radial", "ulna", "ulnar", "forearm", "elbow", "humerus", "humeral",
                   "arm", "shoulder"),
    "lower limb": ("foot", "feet", "toe", "toes", "metatarsal", "metatarsals", "tarsal", "tarsus", "calcaneus",
                   "calcaneal", "talus", "ankle", "tibia", "tibial", "fibula", "fibular", "shin", "leg", "knee",
                   "patella", "femur", "femoral", "thigh"),
    "pelvis": ("hip", "pelvis", "pelvic", "ilium", "iliac", "ischium", "ischial", "pubis", "pubic", "acetabulum",
               "acetabular", "sacrum", "sacral", "coccyx"),
}


def region_of_site(site) -> str | None:
    """The body region(s) of an anatomical site: ``;``-joined, or None where no word names a limb or the pelvis.

    Several sites may be given, ``;``-separated (BTXRD's ``tibia;fibula;femur``). A bone outside
    the limbs and pelvis (``spine``, ``rib``) has no region the model knows.

    Example:
        >>> region_of_site("distal femur"), region_of_site("hip bone"), region_of_site("ulna;humerus")
        ('lower limb', 'pelvis', 'upper limb')
        >>> region_of_site("hand;tibia"), region_of_site("thoracic spine")
        ('upper limb;lower limb', None)
    """
    words = set(re.findall(r"[a-z]+", str(site or "").lower()))
    found = [region for region in REGIONS if words & set(SITE_WORDS[region])]
    return ";".join(found) or None


def encode_clinical(age=None, sex=None, region=None, view=None) -> tuple[np.ndarray, list[str]]:
    """Encode one case's clinical fields.

    Args:
        age: years, or None.
        sex: ``M``/``F`` (case-insensitive), or None.
        region: ``upper limb``, ``lower limb`` or ``pelvis`` (``;``-joined allowed), or None.
        view: ``frontal``, ``lateral`` or ``oblique``, or None.

    The site is never an input; :func:`clinical_with_header` reads a region from it where none is given.

    Returns:
        ``(vector, missing)``: a float32 vector of length :data:`N_CLINICAL` and the names of the
        fields that were missing.

    Raises:
        ValueError: a value that is present but not understood.
    """
    missing = []
    v = np.zeros(N_CLINICAL, np.float32)
    if age is None or (isinstance(age, float) and math.isnan(age)) or age == "":
        v[0], v[1] = 0.35, 1.0
        missing.append("age")
    else:
        try:
            a = decimal_number(age)  # "48,5" from a table where the decimal mark is a comma
        except ValueError:
            raise ValueError(f"age {age!r} is not a number of years") from None
        if not 0 <= a <= 130:
            raise ValueError(f"age {a} is outside 0-130 years")
        v[0] = a / 100.0
    s = (sex or "").strip().upper()
    if s in ("M", "MALE"):
        v[2] = 1.0
    elif s in ("F", "FEMALE"):
        v[2] = 0.0
    elif s == "":
        v[2] = 0.5
        missing.append("sex")
    else:
        raise ValueError(f"sex {sex!r} is not M or F")
    for name, values, offset in (("region", REGIONS, 3), ("view", VIEWS, 3 + len(REGIONS))):
        given = region if name == "region" else view
        parts = [p.strip().lower() for p in str(given or "").split(";") if p.strip()]
        if not parts:
            missing.append(name)
        for p in parts:
            if p not in values:
                raise ValueError(f"{name} {p!r} is not one of {', '.join(values)}")
            v[offset + values.index(p)] = 1.0
    return v, missing


def clinical_with_header(given: dict | None, header: dict | None) -> tuple[dict, dict]:
    """The clinical values an image is analysed with, and where each came from.

    A value given (a clinical table's row, a form's field) wins; the image header's
    (:func:`osteolens.io.dicom_clinical.header_clinical`) fills what is not given; a given site
    stands in for a region neither gives (:func:`region_of_site`).

    Args:
        given: ``age, sex, region, view, site`` (values may be None or ""), with ``_where`` (the
            table and line) when read from a table.
        header: ``{field: {"value", "from"}}`` read from the image's header, or None.

    Returns:
        ``(values, used)``: ``values`` for :func:`encode_clinical` (``age, sex, region, view``,
        and ``_where``), and ``used``: ``{field: {"value", "from"}}`` for each value there.

    >>> values, used = clinical_with_header({"age": "40", "site": "femur", "_where": "c.csv line 2"},
    ...                                     {"sex": {"value": "F", "from": "DICOM Patient's Sex 'F'"}})
    >>> values
    {'age': '40', 'sex': 'F', 'region': 'lower limb', 'view': None, '_where': 'c.csv line 2'}
    >>> used["age"], used["region"]["from"]
    ({'value': 40.0, 'from': 'c.csv line 2'}, "site 'femur'")
    """
    given, header = given or {}, header or {}
    values, used = {}, {}
    for name in ("age", "sex", "region", "view"):
        value = given.get(name)
        if value is not None and str(value).strip():
            values[name] = value
            used[name] = {"value": _as_read(name, value), "from": given.get("_where") or "given"}
        elif name in header:
            values[name] = header[name]["value"]
            used[name] = dict(header[name])
        elif name == "region" and (from_site := region_of_site(given.get("site"))):
            values[name] = from_site
            used[name] = {"value": from_site, "from": f"site {str(given['site']).strip()!r}"}
        else:
            values[name] = None
    values["_where"] = given.get("_where")
    return values, used


def _as_read(name: str, value):
    """A given value as the model reads it: an age as a number of years (``"48,5"`` -> 48.5, as a DICOM header's
    ``052Y`` gives 52.0), the rest as given.

    >>> _as_read("age", "52"), _as_read("age", " 48,5 "), _as_read("age", "old"), _as_read("sex", "F")
    (52.0, 48.5, 'old', 'F')
    """
    if name != "age":
        return value
    try:
        return decimal_number(value)
    except ValueError:
        return value  # encode_clinical names the problem


def clinical_table(cases):
    """The ``--clinical`` CSV table (image, age, sex, site, region, view) of manifest cases; whole ages without ``.0``."""
    import pandas as pd

    rows = [{"image": Path(c.image).name, "age": None if c.age is None or c.age != c.age else _whole(c.age),
             "sex": c.sex, "site": c.site, "region": c.region, "view": c.view} for c in cases]
    return pd.DataFrame(rows, dtype=object)


def _whole(age: float) -> int | float:
    return int(age) if float(age).is_integer() else age
