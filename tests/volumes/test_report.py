import dataclasses
import json

import numpy as np
import pytest

from osteolens.errors import OsteolensError
from osteolens.io.rtstruct import rtstruct_to_mask
from osteolens.io.volumes import read_volume
from osteolens.volumes.align import resample_to
from osteolens.volumes.report import volume_report
from tests.conftest import shared


def series(patient, *modalities):
    base = shared("sts_ct_mr_pet") / "dicom" / patient
    return {m: (base / m / "image", base / m / "mask" / "RS.dcm") for m in modalities}


def test_report_on_ct_mr_pet_of_one_patient(tmp_path):
    report = volume_report(series("STS_002", "CT", "MR_T1", "PET"), tmp_path)
    s = report["series"]
    assert report["reference_series"] == "CT" and report["alignment"].startswith("patient coordinates (shared")
    ct, pet = s["CT"]["measurements"], s["PET"]["measurements"]
    assert ct["volume_ml"] == pytest.approx(17090 * np.prod(read_volume(shared("sts_ct_mr_pet") / "nifti" / "STS_002" /
                                                                          "CT_mask.nii.gz").spacing) / 1000, rel=1e-6)
    # the same contour drawn on three grids gives the same lesion
    assert s["MR_T1"]["measurements"]["volume_ml"] == pytest.approx(ct["volume_ml"], rel=0.02)
    assert pet["volume_ml"] == pytest.approx(ct["volume_ml"], rel=0.10)
    assert s["MR_T1"]["agreement_with_reference"]["dice"] > 0.97 and s["PET"]["agreement_with_reference"]["dice"] > 0.85
    assert pet["suv_max"] >= pet["suv_peak"] >= pet["suv_mean"] > 0 and "suv_max" not in ct
    written = json.loads((tmp_path / "report.json").read_text())
    assert written["series"]["PET"]["measurements"]["suv_max"] == pet["suv_max"]
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "not a medical device" in html
    assert (tmp_path / "slices_PET.png").stat().st_size > 10_000 and "| SUVpeak (1 mL) |" in (tmp_path / "report.md").read_text()


def test_registration_recovers_most_of_a_known_shift():
    base = shared("sts_ct_mr_pet") / "dicom" / "STS_002"
    ct = read_volume(base / "CT" / "image")
    ct_mask, _ = rtstruct_to_mask(base / "CT" / "mask" / "RS.dcm", ct)
    mr = read_volume(base / "MR_T1" / "image")
    mr_mask, _ = rtstruct_to_mask(base / "MR_T1" / "mask" / "RS.dcm", mr)
    moved = dataclasses.replace(mr, origin=tuple(np.array(mr.origin) + [12.0, -8.0, 6.0]))

    def dice(m):
        return 2 * (m & ct_mask).sum() / (m.sum() + ct_mask.sum())

    assert dice(resample_to(moved, ct, mr_mask)[1]) < 0.6
    assert dice(resample_to(moved, ct, mr_mask, register=True)[1]) > 0.85


def test_bad_requests_are_named(tmp_path):
    with pytest.raises(OsteolensError, match="reference series 'XX'"):
        volume_report(series("STS_002", "PET"), tmp_path, reference="XX")
    btxrd = shared("btxrd256")
    with pytest.raises(OsteolensError, match="needs a 3-D series"):
        volume_report({"X": (btxrd / "images" / "IMG000001.png", btxrd / "masks" / "IMG000001.png")}, tmp_path)
