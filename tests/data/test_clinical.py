import numpy as np
import pandas as pd
import pytest

from osteolens.data.clinical import CLINICAL_FEATURES, clinical_table, clinical_with_header, encode_clinical, region_of_site


def encoded(**given):
    """The model's clinical vector of the values given, as the analysis merges them (no image header)."""
    values, _ = clinical_with_header(given, None)
    return encode_clinical(values["age"], values["sex"], values["region"], values["view"])


def test_a_site_without_a_region_gives_the_region_and_a_given_region_wins():
    vec, missing = encoded(age=30, sex="F", region=None, view="frontal", site="proximal tibia")
    assert missing == [] and vec[CLINICAL_FEATURES.index("region=lower limb")] == 1.0
    vec, missing = encoded(age=30, sex="F", region="pelvis", view="frontal", site="femur")  # a pelvis film showing the femur
    assert vec[CLINICAL_FEATURES.index("region=pelvis")] == 1.0 and vec[CLINICAL_FEATURES.index("region=lower limb")] == 0
    vec, missing = encoded(age=30, sex="F", region=None, view="frontal", site="lumbar spine")  # no region the model knows
    assert missing == ["region"] and not vec[3:6].any()


def test_regions_read_from_btxrd_sites_agree_with_its_recorded_regions(btxrd_manifest):
    """BTXRD records both for its 1,580 tumour images (a site names the tumour's bone, the region the film's):
    the region read from the site is the recorded one for 95% of them (1,506), and no site is unread."""
    m = pd.read_csv(btxrd_manifest)
    t = m[m["site"].notna()]
    derived = t["site"].map(region_of_site)
    assert len(t) == 1580 and derived.notna().all()
    assert (derived == t["region"]).sum() == 1506
    # where they differ, the film shows more than the tumour's bone: a femur on a pelvis film
    differ = t[derived != t["region"]]
    assert ((differ["site"].str.contains("femur")) & (differ["region"] == "pelvis")).sum() >= 40


@pytest.mark.parametrize("site", ["", None, np.nan, "skull"])
def test_no_region_from_nothing(site):
    assert region_of_site(site) is None


def test_an_age_with_a_decimal_comma_is_read_and_words_are_refused():
    assert encode_clinical("48,5")[0][0] == pytest.approx(0.485)
    with pytest.raises(ValueError, match="age 'forty' is not a number of years"):
        encode_clinical("forty")


def test_the_clinical_table_of_real_cases_writes_ages_as_read_and_records_them_as_numbers(btxrd_manifest, tmp_path):
    from osteolens.data.manifest import load_manifest

    cases = load_manifest(btxrd_manifest).cases[:40]
    clinical_table(cases).to_csv(tmp_path / "c.csv", index=False)
    text = (tmp_path / "c.csv").read_text()
    assert ".0," not in text  # BTXRD's ages are whole years: "52", not "52.0"
    first = pd.read_csv(tmp_path / "c.csv", dtype=str).iloc[0]
    assert first.age == str(int(cases[0].age))
    _, used = clinical_with_header({"age": first.age, "sex": first.sex, "_where": "c.csv line 2"}, None)
    assert used["age"] == {"value": float(cases[0].age), "from": "c.csv line 2"} and used["sex"]["value"] == first.sex
    _, used = clinical_with_header({"age": "4,5"}, None)  # an infant's age from a spreadsheet with decimal commas
    assert used["age"]["value"] == 4.5
