"""Published clinical scores for bone metastases, as pure functions with loud validation.

- Mirels' score for the risk of pathological fracture of a long bone (Mirels H., Clin Orthop
  Relat Res 1989;249:256-264): site, pain, lesion type and size relative to the bone's
  diameter, each 1-3; total 4-12. <= 7: low risk (fracture risk about 4%; observation and
  radiotherapy); 8: borderline (about 15%; clinical judgement); >= 9: high risk (33% or more;
  prophylactic fixation recommended).
- SINS, the Spinal Instability Neoplastic Score (Fisher C.G. et al., Spine 2010;35:E1221-E1229):
  location 0-3, pain 0-3, bone lesion 0-2, radiographic alignment 0-4, vertebral body collapse
  0-3, posterolateral involvement 0-3; total 0-18. 0-6 stable, 7-12 indeterminate (possibly
  impending instability; surgical consultation recommended), 13-18 unstable.

Example:
    >>> mirels("peritrochanteric", "functional", "lytic", "over_two_thirds").total
    12
"""

from __future__ import annotations

from dataclasses import dataclass

from osteolens.errors import OsteolensError

MIRELS = {
    "site": {"upper_limb": 1, "lower_limb": 2, "peritrochanteric": 3},
    "pain": {"mild": 1, "moderate": 2, "functional": 3},
    "lesion": {"blastic": 1, "mixed": 2, "lytic": 3},
    "size": {"under_one_third": 1, "one_to_two_thirds": 2, "over_two_thirds": 3},
}

SINS = {
    "location": {"junctional": 3, "mobile": 2, "semi_rigid": 1, "rigid": 0},
    "pain": {"mechanical": 3, "occasional_non_mechanical": 1, "pain_free": 0},
    "lesion": {"lytic": 2, "mixed": 1, "blastic": 0},
    "alignment": {"subluxation_translation": 4, "de_novo_deformity": 2, "normal": 0},
    "collapse": {"over_50_percent": 3, "under_50_percent": 2, "none_over_50_percent_body_involved": 1, "none": 0},
    "posterolateral": {"bilateral": 3, "unilateral": 1, "none": 0},
}

#: spinal levels of each SINS location class (occiput-C2, C7-T2, T11-L1, L5-S1 are junctional)
SINS_LEVELS = {
    "junctional": ("O", "C1", "C2", "C7", "T1", "T2", "T11", "T12", "L1", "L5", "S1"),
    "mobile": ("C3", "C4", "C5", "C6", "L2", "L3", "L4"),
    "semi_rigid": tuple(f"T{i}" for i in range(3, 11)),
    "rigid": ("S2", "S3", "S4", "S5"),
}


@dataclass(frozen=True)
class ScoreResult:
    """A score, its parts and its published interpretation."""

    name: str
    total: int
    parts: dict
    category: str
    interpretation: str

    def to_dict(self) -> dict:
        return {"score": self.name, "total": self.total, "parts": self.parts, "category": self.category,
                "interpretation": self.interpretation}


def _points(table: dict, field: str, value: str, score: str) -> int:
    key = str(value).strip().lower().replace(" ", "_").replace("-", "_")
    options = table[field]
    if key not in options:
        raise OsteolensError(f"{score}: {field} {value!r} is not one of {', '.join(options)}")
    return options[key]


def mirels(site: str, pain: str, lesion: str, size: str) -> ScoreResult:
    """Mirels' score (4-12) and its recommendation.

    Args:
        site: ``upper_limb``, ``lower_limb`` or ``peritrochanteric``.
        pain: ``mild``, ``moderate`` or ``functional`` (pain aggravated by limb function).
        lesion: ``blastic``, ``mixed`` or ``lytic``.
        size: share of the bone's diameter (cortex) destroyed: ``under_one_third``,
            ``one_to_two_thirds``, ``over_two_thirds``.

    Raises:
        OsteolensError: a value outside the published categories.
    """
    parts = {f: _points(MIRELS, f, v, "Mirels") for f, v in (("site", site), ("pain", pain), ("lesion", lesion), ("size", size))}
    total = sum(parts.values())
    if total <= 7:
        cat, text = "low", "fracture risk about 4%: observation and radiotherapy"
    elif total == 8:
        cat, text = "borderline", "fracture risk about 15%: use clinical judgement"
    else:
        cat, text = "high", "fracture risk 33% or more: prophylactic fixation recommended"
    return ScoreResult("Mirels", total, parts, cat, text)


def sins_location(level: str) -> str:
    """The SINS location class of a spinal level (``T12`` -> ``junctional``)."""
    key = str(level).strip().upper()
    for cls, levels in SINS_LEVELS.items():
        if key in levels:
            return cls
    raise OsteolensError(f"SINS: spinal level {level!r} is not one of O, C1-C7, T1-T12, L1-L5, S1-S5")


def sins(location: str, pain: str, lesion: str, alignment: str, collapse: str, posterolateral: str) -> ScoreResult:
    """Spinal Instability Neoplastic Score (0-18) and its category.

    Args:
        location: a location class (``junctional``, ``mobile``, ``semi_rigid``, ``rigid``) or a
            spinal level such as ``T12``.
        pain: ``mechanical``, ``occasional_non_mechanical`` or ``pain_free``.
        lesion: ``lytic``, ``mixed`` or ``blastic``.
        alignment: ``subluxation_translation``, ``de_novo_deformity`` (kyphosis/scoliosis) or ``normal``.
        collapse: ``over_50_percent``, ``under_50_percent``, ``none_over_50_percent_body_involved`` or ``none``.
        posterolateral: involvement of facet, pedicle or costovertebral joint: ``bilateral``,
            ``unilateral`` or ``none``.

    Raises:
        OsteolensError: a value outside the published categories.
    """
    loc = str(location).strip()
    if loc.lower().replace("-", "_") not in SINS["location"]:
        loc = sins_location(loc)
    values = (("location", loc), ("pain", pain), ("lesion", lesion), ("alignment", alignment),
              ("collapse", collapse), ("posterolateral", posterolateral))
    parts = {f: _points(SINS, f, v, "SINS") for f, v in values}
    total = sum(parts.values())
    if total <= 6:
        cat, text = "stable", "stable spine"
    elif total <= 12:
        cat, text = "indeterminate", "indeterminate (possibly impending) instability: surgical consultation recommended"
    else:
        cat, text = "unstable", "unstable spine: surgical consultation recommended"
    return ScoreResult("SINS", total, parts, cat, text)
