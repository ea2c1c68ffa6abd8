"""Clinical context as a model input: age, sex, body region and view.

The anatomical *site* is deliberately not used: in BTXRD it is annotated for every tumour image
and for no normal image, so a model given the site would read the label from it.

Missing values get neutral codes (age 0.35, the training median / 100; sex 0.5; region and view
all zero) and a flag, and :func:`encode_clinical` reports them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

REGIONS = ("upper limb", "lower limb", "pelvis")
VIEWS = ("frontal", "lateral", "oblique")
CLINICAL_FEATURES = ("age_decades_scaled", "age_missing", "sex_male", *[f"region={r}" for r in REGIONS], *[f"view={v}" for v in VIEWS])
N_CLINICAL = len(CLINICAL_FEATURES)


def encode_clinical(age=None, sex=None, region=None, view=None) -> tuple[np.ndarray, list[str]]:
    """Encode one case's clinical fields.

    Args:
        age: years, or None.
        sex: ``M``/``F`` (case-insensitive), or None.
        region: ``upper limb``, ``lower limb`` or ``pelvis`` (``;``-joined allowed), or None.
        view: ``frontal``, ``lateral`` or ``oblique``, or None.

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
            a = float(age)
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


def clinical_table(cases):
    """The ``--clinical`` CSV table (image, age, sex, site, region, view) of manifest cases."""
    import pandas as pd

    return pd.DataFrame([{"image": Path(c.image).name, "age": c.age, "sex": c.sex, "site": c.site,
                          "region": c.region, "view": c.view} for c in cases])
