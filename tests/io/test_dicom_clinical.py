"""The clinical inputs a DICOM radiograph's header gives: age, sex, body region and view; and the body part and
side by which a study's views are read together."""

import glob
import json

import pydicom
import pytest
from pydicom import Dataset

from osteolens.io.dicom_clinical import header_clinical
from tests.conftest import shared


def values(**attributes):
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return {k: v["value"] for k, v in header_clinical(ds).items()}


@pytest.mark.filterwarnings("ignore:Invalid value for VR AS")  # pydicom's, as the test sets a damaged age
@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")  # and a lower-case side
@pytest.mark.parametrize("attributes, expected", [
    ({"PatientAge": "048Y"}, {"age": 48.0}),
    ({"PatientAge": "006M"}, {"age": 0.5}),
    ({"PatientAge": "010W"}, {"age": 0.19}),
    ({"PatientAge": "12"}, {"age": 12.0}),  # no unit: years, as archives write it
    ({"PatientBirthDate": "19800615", "StudyDate": "20240614"}, {"age": 43.0}),  # the day before the birthday
    ({"PatientBirthDate": "19800615", "StudyDate": "20240615"}, {"age": 44.0}),
    ({"PatientAge": "0X4Y", "PatientBirthDate": "20100101", "AcquisitionDate": "20200301"}, {"age": 10.0}),
    ({"PatientBirthDate": "20300101", "StudyDate": "20240101"}, {}),  # born after the study
    ({"PatientAge": "200Y"}, {}),
    ({"PatientSex": "F"}, {"sex": "F"}),
    ({"PatientSex": "O"}, {}),
    ({"BodyPartExamined": "KNEE"}, {"region": "lower limb", "body_part": "KNEE"}),
    ({"BodyPartExamined": "HIP"}, {"region": "pelvis", "body_part": "HIP"}),
    ({"BodyPartExamined": "ARM"}, {"region": "upper limb", "body_part": "ARM"}),
    ({"BodyPartExamined": "LOWEREXTREMITY"}, {"region": "lower limb", "body_part": "LOWEREXTREMITY"}),
    ({"BodyPartExamined": "EXTREMITY"}, {"body_part": "EXTREMITY"}),
    ({"BodyPartExamined": "LSPINE"}, {"body_part": "LSPINE"}),
    ({"BodyPartExamined": "CHEST"}, {"body_part": "CHEST"}),
    ({"ViewPosition": "PA"}, {"view": "frontal"}),
    ({"ViewPosition": "LL"}, {"view": "lateral"}),
    ({"ViewPosition": "LAT"}, {"view": "lateral"}),
    ({"ViewPosition": "RLO"}, {"view": "oblique"}),
    ({"ViewPosition": "RLD"}, {}),  # a decubitus view: frontal or lateral depends on the beam
    ({"ImageLaterality": "R"}, {"laterality": "R"}),
    ({"ImageLaterality": "U", "Laterality": "L"}, {"laterality": "L"}),  # unpaired says no side; the series' does
    ({"Laterality": "l"}, {"laterality": "L"}),
    ({"ImageLaterality": "X"}, {}),
])
def test_header_attributes_read_as_the_model_reads_clinical_fields(attributes, expected):
    assert values(**attributes) == expected


def test_coded_anatomy_and_view_are_read_where_the_plain_attributes_say_nothing():
    region, view = Dataset(), Dataset()
    region.CodeMeaning, view.CodeMeaning = "Lower limb", "latero-medial"
    assert values(BodyPartExamined="", AnatomicRegionSequence=[region], ViewCodeSequence=[view]) == {
        "region": "lower limb", "view": "lateral", "body_part": "Lower limb"}


def test_a_real_series_header_gives_age_and_sex_and_no_region_for_extremity():
    """A real PET slice of the soft-tissue sarcoma set: Patient's Age 059Y, sex M, Body Part EXTREMITY."""
    pet = sorted(glob.glob(str(shared("sts_ct_mr_pet") / "dicom" / "STS_001" / "PET" / "image" / "*.dcm")))[0]
    found = header_clinical(pydicom.dcmread(pet, stop_before_pixels=True))
    assert found == {"age": {"value": 59.0, "from": "DICOM Patient's Age '059Y'"},
                     "sex": {"value": "M", "from": "DICOM Patient's Sex 'M'"},
                     "body_part": {"value": "EXTREMITY", "from": "DICOM Body Part Examined 'EXTREMITY'"}}


def test_analysis_reads_the_header_where_no_value_is_given_and_a_given_value_wins(tiny_model, btxrd_dir, tmp_path):
    """A real BTXRD radiograph (IMG000004: 52-year-old man, foot, frontal) wrapped as DICOM with those values in its
    header is analysed exactly as the same file with the values given in a clinical table; without either, the
    model reads them as missing. A table's value wins over the header's, and the JSON says where each came from."""
    from osteolens.inference.analyze import analyze
    from osteolens.io.dicom_write import image_to_dicom
    from osteolens.models.registry import load_model

    model = load_model(tiny_model)
    assert model.uses_clinical
    png = btxrd_dir / "images" / "IMG000004.png"
    plain = image_to_dicom(png, tmp_path / "in" / "plain.dcm", patient_id="P-1")
    tagged = image_to_dicom(png, tmp_path / "in" / "tagged.dcm", patient_id="P-1", patient_sex="M",
                            patient_age="052Y", body_part="FOOT", view_position="AP")
    (tmp_path / "clin.csv").write_text("image,age,sex,site,region,view\nplain.dcm,52,M,,lower limb,frontal\n"
                                       "tagged2.dcm,,F,,,\n")
    tagged2 = image_to_dicom(png, tmp_path / "in" / "tagged2.dcm", patient_id="P-1", patient_sex="M",
                             patient_age="52", body_part="FOOT", view_position="AP")
    results = analyze([plain, tagged, tagged2], tmp_path / "out", model=model, clinical_csv=tmp_path / "clin.csv",
                      overlays=False, report=False)
    by_table, by_header, overridden = results
    assert by_header.clinical_missing == [] and by_table.clinical_missing == []
    assert (by_header.p_normal, by_header.p_benign, by_header.p_malignant) == (
        by_table.p_normal, by_table.p_benign, by_table.p_malignant)
    saved = json.loads((tmp_path / "out" / "tagged.json").read_text())["clinical"]
    assert saved == {"age": {"value": 52.0, "from": "DICOM Patient's Age '052Y'"},
                     "sex": {"value": "M", "from": "DICOM Patient's Sex 'M'"},
                     "region": {"value": "lower limb", "from": "DICOM Body Part Examined 'FOOT'"},
                     "view": {"value": "frontal", "from": "DICOM View Position 'AP'"}}
    assert by_table.clinical["age"] == {"value": 52.0, "from": "clin.csv line 2"}  # a number, as the header's
    assert overridden.clinical["sex"] == {"value": "F", "from": "clin.csv line 3"}
    assert overridden.clinical["age"]["from"] == "DICOM Patient's Age '052Y'"
    assert overridden.p_malignant != by_header.p_malignant  # the model reads sex: F, not the header's M
    alone = analyze([plain], tmp_path / "out2", model=model, overlays=False, report=False)[0]
    assert alone.clinical_missing == ["age", "sex", "region", "view"] and alone.clinical == {}


def test_the_sr_records_the_clinical_values_the_model_read(tiny_model, btxrd_dir, tmp_path):
    """A radiograph's header gives age, body part, side and view, a table gives the sex: its SR records the four values
    the model read (the table's sex, not the header's) and the finding site, and passes dciodvfy."""
    import highdicom as hd

    from osteolens.inference.analyze import analyze
    from osteolens.io.dicom_write import image_to_dicom
    from tests.io.test_dicom_write import dciodvfy_errors

    src = image_to_dicom(btxrd_dir / "images" / "IMG000004.png", tmp_path / "in" / "knee.dcm", patient_id="P-1",
                         patient_sex="M", patient_age="052Y", body_part="FOOT", view_position="AP", laterality="R")
    (tmp_path / "clin.csv").write_text("image,sex\nknee.dcm,F\n")
    analyze([src], tmp_path / "out", model=tiny_model, clinical_csv=tmp_path / "clin.csv", dicom_out=True,
            overlays=False, report=False)
    path = tmp_path / "out" / "dicom" / "knee" / "sr.dcm"
    assert dciodvfy_errors(path) == []
    group = hd.sr.srread(path).content.get_planar_roi_measurement_groups()[0]
    measured = {m.name.meaning: (m.value, m.unit.value) for m in group.get_measurements()}
    assert measured["Age given to the model"] == (52.0, "a")
    told = {e.name.meaning: e.value for e in group.get_qualitative_evaluations()}
    assert (told["Sex given to the model"].value, told["Sex given to the model"].scheme_designator) == ("F", "DCM")
    assert told["Region given to the model"].meaning == "lower limb"
    assert told["View given to the model"].meaning == "frontal"
    # where the finding is, coded (SNOMED CT), from the header's body part and side
    [site] = group.finding_sites
    assert (site.value.value, site.value.meaning, site.laterality.meaning) == ("56459004", "Foot", "Right")
