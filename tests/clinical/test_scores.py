import pytest

from osteolens.clinical.scores import mirels, sins, sins_location
from osteolens.errors import OsteolensError


def test_mirels_range_and_published_boundaries():
    lowest = mirels("upper limb", "mild", "blastic", "under one third")
    assert lowest.total == 4 and lowest.category == "low"
    highest = mirels("peritrochanteric", "functional", "lytic", "over_two_thirds")
    assert highest.total == 12 and highest.category == "high" and "prophylactic fixation" in highest.interpretation
    # peritrochanteric + lytic alone give at least 8 (Ramsey et al. 2020 on Mirels' table)
    assert mirels("peritrochanteric", "mild", "lytic", "under_one_third").total == 8
    assert mirels("peritrochanteric", "mild", "lytic", "under_one_third").category == "borderline"
    assert mirels("lower_limb", "moderate", "mixed", "one_to_two_thirds").total == 8
    assert mirels("lower_limb", "mild", "mixed", "one_to_two_thirds").category == "low"  # 7
    assert mirels("lower_limb", "functional", "lytic", "under_one_third").category == "high"  # 9


def test_mirels_rejects_invalid_values():
    with pytest.raises(OsteolensError, match="Mirels: site 'skull'"):
        mirels("skull", "mild", "lytic", "under_one_third")
    with pytest.raises(OsteolensError, match="size 'half'"):
        mirels("upper_limb", "mild", "lytic", "half")


def test_sins_components_and_categories():
    # T12 lytic lesion, mechanical pain, normal alignment, <50% collapse, unilateral: 3+3+2+0+2+1
    r = sins("T12", "mechanical", "lytic", "normal", "under_50_percent", "unilateral")
    assert r.parts["location"] == 3 and r.total == 11 and r.category == "indeterminate"
    assert sins("rigid", "pain_free", "blastic", "normal", "none", "none").total == 0
    top = sins("junctional", "mechanical", "lytic", "subluxation_translation", "over_50_percent", "bilateral")
    assert top.total == 18 and top.category == "unstable"
    assert sins("T6", "occasional_non_mechanical", "mixed", "normal", "none", "none").total == 3  # semi-rigid 1
    assert sins("L3", "mechanical", "lytic", "normal", "none", "none").category == "indeterminate"  # 2+3+2 = 7
    assert sins("L3", "mechanical", "mixed", "normal", "none", "none").category == "stable"  # 6
    assert sins("C7", "mechanical", "lytic", "de_novo_deformity", "under_50_percent", "bilateral").total == 15


def test_sins_levels_and_errors():
    assert [sins_location(x) for x in ("C2", "C5", "T2", "T8", "L1", "L4", "S1", "S3")] == [
        "junctional", "mobile", "junctional", "semi_rigid", "junctional", "mobile", "junctional", "rigid"]
    with pytest.raises(OsteolensError, match="spinal level 'T13'"):
        sins("T13", "mechanical", "lytic", "normal", "none", "none")
    with pytest.raises(OsteolensError, match="alignment 'tilted'"):
        sins("T5", "mechanical", "lytic", "tilted", "none", "none")


def test_cli_scores():
    from typer.testing import CliRunner

    from osteolens.cli import app

    r = CliRunner().invoke(app, ["score", "mirels", "--site", "peritrochanteric", "--pain", "functional", "--lesion", "lytic", "--size", "over_two_thirds"])
    assert r.exit_code == 0 and "Mirels 12" in r.output and "prophylactic fixation" in r.output
    r = CliRunner().invoke(app, ["score", "sins", "--location", "T12", "--pain", "mechanical", "--lesion", "lytic", "--alignment", "normal",
                                 "--collapse", "under_50_percent", "--posterolateral", "unilateral"])
    assert r.exit_code == 0 and "SINS 11" in r.output and "indeterminate" in r.output
