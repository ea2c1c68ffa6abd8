"""Reading a study's views together: real BTXRD radiographs through the real pipeline."""

import json

import numpy as np
import pandas as pd
import pytest

from osteolens.inference.analyze import analyze, decide_label
from osteolens.inference.study import STUDY_COLUMNS, mean_log_probability
from osteolens.models.registry import load_model
from osteolens.training.calibration import normalised_entropy

PROBS = ["p_normal", "p_benign", "p_malignant"]


def test_mean_log_probability_is_the_renormalised_geometric_mean():
    one = np.array([[0.7, 0.2, 0.1]])
    assert np.allclose(mean_log_probability(one), one[0])  # one view reads as itself
    two = np.array([[0.9, 0.09, 0.01], [0.1, 0.8, 0.1]])
    geo = np.sqrt(two[0] * two[1])
    assert np.allclose(mean_log_probability(two), geo / geo.sum())
    # views that disagree outright leave the two classes they name level; the third, which neither
    # names, gains most (0.01 -> 0.048), so the reading turns less sure than either view
    split = mean_log_probability(np.array([[0.98, 0.01, 0.01], [0.01, 0.98, 0.01]]))
    assert split[0] == pytest.approx(split[1]) == pytest.approx(0.476, abs=1e-3)
    assert split[2] == pytest.approx(0.048, abs=1e-3)
    assert normalised_entropy(split) > normalised_entropy(np.array([0.98, 0.01, 0.01]))
    # a zero probability (an int8 model can round one) does not take the class to exactly zero
    assert mean_log_probability(np.array([[0.0, 0.5, 0.5], [0.5, 0.5, 0.0]])).min() > 0


@pytest.fixture(scope="module")
def studies_run(btxrd_dir, tmp_path_factory):
    """The shipped model on real radiographs: a two-view study of the left foot with a comparison film of the right, a
    one-image study, a study whose only file is broken, an image without a study; and DICOM views of one study named
    only by their headers: two of the left knee, one of the right knee."""
    from osteolens.io.dicom_write import image_to_dicom

    d = tmp_path_factory.mktemp("study_inputs")
    names = ["IMG000004.png", "IMG000005.png", "IMG001869.png", "IMG000234.png", "IMG001868.png"]
    for n in names:
        (d / n).write_bytes((btxrd_dir / "images" / n).read_bytes())
    (d / "broken.png").write_text("not an image")
    uid = "1.2.826.0.1.3680043.10.1.7"
    dcm = [image_to_dicom(btxrd_dir / "images" / n, d / f"view_{i}.dcm", patient_id="P-9", study_uid=uid, body_part="KNEE",
                          laterality=side) for i, (n, side) in enumerate([("IMG001350.png", "L"), ("IMG003461.png", "L"),
                                                                          ("IMG001870.png", "R")])]
    from PIL import Image

    Image.fromarray(np.zeros((300, 300), np.uint8)).save(d / "blank.png")  # read, then refused as blank
    dcm.append(image_to_dicom(d / "blank.png", d / "view_blank.dcm", patient_id="P-9", study_uid=uid))
    (d / "blank.png").unlink()
    clinical = d / "clinical.csv"
    pd.DataFrame({"image": names + ["broken.png"], "age": [52, 52, 52, 16, "", 40], "sex": ["M", "M", "M", "F", "", ""],
                  "site": ["foot", "foot", "foot", "", "", ""], "laterality": ["left", "L", "right", "", "", ""],
                  "study": ["exam-A", "exam-A", "exam-A", "exam-B", "", "exam-C"]}).to_csv(clinical, index=False)
    out = tmp_path_factory.mktemp("study_out")
    model = load_model("osteolens-radiograph")
    readings = []
    results = analyze([*(d / n for n in names), d / "broken.png", *dcm], out, model=model, clinical_csv=clinical,
                      overlays=False, studies=readings)
    return out, model, results, readings, d


def test_a_study_reads_its_views_together(studies_run):
    out, model, results, readings, _ = studies_run
    images = pd.read_csv(out / "predictions.csv", keep_default_na=False).set_index("image")
    table = pd.read_csv(out / "studies.csv", keep_default_na=False, dtype={"images": str})
    assert tuple(table.columns) == STUDY_COLUMNS
    uid = "1.2.826.0.1.3680043.10.1.7"
    assert list(table.study) == ["exam-A", "exam-A", "exam-B", "exam-C", uid, uid]
    assert [r.study for r in readings] == list(table.study)
    assert list(zip(table.laterality, table.body_part)) == [("L", "foot"), ("R", "foot"), ("", ""), ("", ""),
                                                            ("L", "KNEE"), ("R", "KNEE")]
    st = table.set_index(["study", "laterality"])
    assert images.loc["IMG000004.png", "study"] == "exam-A" and images.loc["IMG001868.png", "study"] == ""
    assert (images.loc["IMG000004.png", "laterality"], images.loc["IMG001869.png", "laterality"]) == ("L", "R")

    # two views: the geometric mean of the images' own probabilities, and the label by the model's own rule; the
    # comparison film of the other foot is read apart, as itself
    a = st.loc[("exam-A", "L")]
    assert a.status == "ok" and a.n_images == 2 and a.images == "IMG000004.png;IMG000005.png"
    comparison, own = st.loc[("exam-A", "R")], images.loc["IMG001869.png"]
    assert comparison.images == "IMG001869.png" and np.allclose(comparison[PROBS].to_numpy(float),
                                                                own[PROBS].to_numpy(float), atol=2e-6)
    assert comparison.label == own.label == "normal" and a.label == "malignant"
    views = images.loc[["IMG000004.png", "IMG000005.png"], PROBS].to_numpy(float)
    expected = np.sqrt(views[0] * views[1])
    expected /= expected.sum()
    assert np.allclose(a[PROBS].to_numpy(float), expected, atol=2e-6)
    calib = model.metadata["calibration"]
    assert a.label == decide_label(expected, float(normalised_entropy(expected)), calib)
    assert float(a.uncertainty) == pytest.approx(float(normalised_entropy(expected)), abs=1e-6)
    drawn = [n for n in ("IMG000004.png", "IMG000005.png") if images.loc[n, "boxes"]]
    assert a.images_with_lesion == ";".join(drawn)

    # one image: its study reads exactly as the image does
    b, img = st.loc[("exam-B", "")], images.loc["IMG000234.png"]
    assert np.allclose(b[PROBS].to_numpy(float), img[PROBS].to_numpy(float), atol=2e-6)
    assert (b.label, b.subtype) == (img.label, img.subtype)

    # a study none of whose images could be read is an error row naming them; an image without a study is in none
    c = st.loc[("exam-C", "")]
    assert (c.status, c.error, c.failed_images, c.images) == (
        "error", "none of the study's images could be analysed", "broken.png", "")
    assert "IMG001868.png" not in ";".join(table.images)


def test_dicom_views_join_their_study_by_its_uid(studies_run):
    out, *_ = studies_run
    st = pd.read_csv(out / "studies.csv", keep_default_na=False).set_index(["study", "laterality"])
    uid = "1.2.826.0.1.3680043.10.1.7"
    # the header's side splits the study: the left knee's two views together, the right knee apart; the blank
    # view, refused after reading, is listed with each reading of its study
    left, right = st.loc[(uid, "L")], st.loc[(uid, "R")]
    assert left.images == "view_0.dcm;view_1.dcm" and left.failed_images == "view_blank.dcm" and left.n_images == 3
    assert right.images == "view_2.dcm" and right.failed_images == "view_blank.dcm"
    view = json.loads((out / "view_1.json").read_text())
    assert view["study"] == uid
    assert view["anatomy"] == {"body_part": {"value": "KNEE", "from": "DICOM Body Part Examined 'KNEE'"},
                               "laterality": {"value": "L", "from": "DICOM Laterality 'L'"}}


def test_the_report_shows_the_studies(studies_run):
    out, *_ = studies_run
    page = (out / "report.html").read_text()
    assert "Studies: each study's views read together" in page
    assert "exam-A" in page and "none of the study&#x27;s images could be analysed" in page


def test_no_study_no_studies_file(tiny_model, btxrd_dir, tmp_path):
    readings = []
    analyze([btxrd_dir / "images" / "IMG000004.png"], tmp_path, model=tiny_model, overlays=False, studies=readings)
    assert readings == [] and not (tmp_path / "studies.csv").exists()
    assert "Studies:" not in (tmp_path / "report.html").read_text()


def test_the_command_prints_each_study(studies_run, tmp_path):
    from typer.testing import CliRunner

    from osteolens.cli import app

    *_, d = studies_run
    inputs = [str(p) for p in sorted(d.iterdir()) if p.suffix != ".csv"]
    clinical = d / "clinical.csv"
    run = CliRunner().invoke(app, ["analyze", *inputs, "--out", str(tmp_path), "--clinical", str(clinical)])
    assert run.exit_code == 0, run.output
    assert "study exam-A, L foot (2 image(s)): malignant" in run.output
    assert "study exam-A, R foot (1 image(s)): normal" in run.output
    assert "error study exam-C (1 image(s)): none of the study's images could be analysed" in run.output
    assert "wrote " in run.output and "predictions.csv, studies.csv and report.html" in run.output


def test_dicom_out_writes_one_sr_per_dicom_study(btxrd_dir, tmp_path):
    """Two views of one DICOM study get one SR naming both, valid by dciodvfy, holding the study's reading; a study
    named by a clinical table whose images are not all of one DICOM study gets none."""
    import highdicom as hd
    import pydicom

    from osteolens.io.dicom_write import image_to_dicom
    from tests.io.test_dicom_write import dciodvfy_errors

    uid = "1.2.826.0.1.3680043.10.1.8"
    views = [image_to_dicom(btxrd_dir / "images" / n, tmp_path / "in" / f"{n[:-4]}.dcm", patient_id="P-7", study_uid=uid,
                            patient_sex="M", patient_age="052Y", body_part="FOOT", laterality="L")
             for n in ("IMG000004.png", "IMG000005.png")]
    other = image_to_dicom(btxrd_dir / "images" / "IMG000234.png", tmp_path / "in" / "other.dcm", patient_id="P-8")
    (tmp_path / "in" / "plain.png").write_bytes((btxrd_dir / "images" / "IMG001868.png").read_bytes())
    clinical = tmp_path / "clin.csv"
    clinical.write_text("image,study\nother.dcm,exam-X\nplain.png,exam-X\n")
    readings = []
    analyze([*views, other, tmp_path / "in" / "plain.png"], tmp_path / "out", model="osteolens-radiograph",
            clinical_csv=clinical, dicom_out=True, overlays=False, report=False, studies=readings)
    table = pd.read_csv(tmp_path / "out" / "studies.csv", keep_default_na=False).set_index("study")
    assert table.loc[uid, "sr_file"] == "study_dicom/1_sr.dcm" and table.loc[uid, "error"] == ""
    assert table.loc["exam-X", "sr_file"] == "" and table.loc["exam-X", "n_images"] == 2
    path = tmp_path / "out" / "study_dicom" / "1_sr.dcm"
    assert dciodvfy_errors(path) == []
    sr = hd.sr.srread(path)
    sources = [pydicom.dcmread(v, stop_before_pixels=True) for v in views]
    assert sr.StudyInstanceUID == uid and sr.PatientID == "P-7"
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
    assert {r.ReferencedSOPInstanceUID for series in evidence for r in series.ReferencedSOPSequence} == \
        {s.SOPInstanceUID for s in sources}
    group = sr.content.get_image_measurement_groups()[0]
    values = {m.name.meaning: m.value for m in group.get_measurements()}
    assert values["Probability of malignant bone tumour"] == pytest.approx(table.loc[uid, "p_malignant"], abs=1e-6)
    assert {e.name.meaning: e.value.meaning for e in group.get_qualitative_evaluations()}["Model decision"] == \
        table.loc[uid, "label"]
    assert {r.referenced_sop_instance_uid for r in group.source_images} == {s.SOPInstanceUID for s in sources}
    [site] = group.finding_sites  # the left foot, coded
    assert (site.value.meaning, site.laterality.meaning) == ("Foot", "Left")
    assert group.tracking_identifier == "study reading L FOOT"
