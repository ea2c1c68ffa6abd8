import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import shared
from osteolens.errors import ImageReadError, OsteolensError
from osteolens.radiomics.batch import extract_case_to_csv, extract_manifest_to_csv
from osteolens.radiomics.extract import extract_features, to_wide
from osteolens.radiomics.names import ibsi_name
from osteolens.radiomics.settings import RadiomicsSettings, load_settings, preset


def test_names_map_to_ibsi_anchors_codes_and_aggregations():
    n = ibsi_name("cm_joint_max_d1_2.5d_d_mrg_fbs_w25.0")
    assert (n.anchor, n.code, n.aggregation) == ("feat_cm_joint_maximum", "GYBY", "2.5D, direction-merged")
    assert ibsi_name("ngl_dcnu_norm_d1_a0.0_3d_fbn_n32").code == "OKJI"
    assert ibsi_name("morph_moran_i").code == "N365" and ibsi_name("image_voxel_size_x") is None


def test_radiograph_features_on_a_real_btxrd_lesion(btxrd_dir):
    image, mask = btxrd_dir / "images" / "IMG000001.png", btxrd_dir / "masks" / "IMG000001.png"
    table = extract_features(image, mask, preset("radiograph"))
    assert list(table.columns) == ["feature", "ibsi_code", "family", "aggregation", "value", "missing_reason"]
    from osteolens.io.images import read_image, read_mask, to_unit_grey

    arr, props = read_image(image)
    roi = to_unit_grey(arr, props)[read_mask(mask)] * 255
    row = table.set_index("feature")
    assert row.loc["feat_stat_mean", "value"] == pytest.approx(roi.mean(), rel=1e-4)
    assert row.loc["feat_stat_maximum", "value"] == pytest.approx(roi.max(), rel=1e-4)
    assert row.loc["feat_morph_approx_volume", "value"] == read_mask(mask).sum()  # one slice of 1-pixel voxels
    # nothing is a silent NaN: every missing value has its reason
    assert (table.value.isna() == (table.missing_reason != "")).all()
    assert set(table.aggregation) == {"", "2D, averaged", "2D, slice-merged", "2D"}


def test_empty_mask_and_size_mismatch_are_named_errors(btxrd_dir, tmp_path):
    image = btxrd_dir / "images" / "IMG000001.png"
    with pytest.raises(ImageReadError, match="the mask is empty"):
        extract_features(image, _blank_like(image), preset("radiograph"))
    with pytest.raises(ImageReadError, match="mask shape"):
        extract_features(image, np.ones((1, 10, 10), bool), preset("radiograph"))


def _blank_like(image):
    from osteolens.io.images import read_image

    arr, _ = read_image(image)
    return np.zeros(arr.shape[:2], bool)


def test_one_voxel_roi_gives_explicit_missing_values(btxrd_dir):
    image = btxrd_dir / "images" / "IMG000001.png"
    mask = _blank_like(image)
    mask[100, 100] = True
    table = extract_features(image, mask, preset("radiograph"))
    missing = table[table.value.isna()]
    assert len(missing) > 0 and (missing.missing_reason.str.contains("1 voxel")).all()
    assert table.set_index("feature").loc["feat_stat_range", "value"] == 0.0


def test_settings_validation_and_presets(tmp_path):
    with pytest.raises(ValueError, match="bin_width"):
        RadiomicsSettings(discretisation="fixed_bin_size", bin_width=None)
    with pytest.raises(ValueError, match="unknown feature families"):
        RadiomicsSettings(families=["glcm2"])
    bad = tmp_path / "s.json"
    bad.write_text('{"dimensions": "4D"}')
    with pytest.raises(OsteolensError, match="invalid radiomics settings"):
        load_settings(bad)
    kw = preset("ibsi-B").to_mirp()
    assert kw["by_slice"] and kw["new_spacing"] == [2.0, 2.0] and kw["base_discretisation_n_bins"] == 32


def test_manifest_batch_goes_on_past_failures(btxrd_manifest, tmp_path):
    m = pd.read_csv(btxrd_manifest)
    for col in ("image", "mask"):  # absolute paths, so the small manifest can live anywhere
        m[col] = [str((btxrd_manifest.parent / p).resolve()) if isinstance(p, str) else p for p in m[col]]
    tumours = m[m.label.isin(["benign", "malignant"])].head(4).copy()
    tumours.loc[tumours.index[1], "mask"] = str(tmp_path / "DOES_NOT_EXIST.png")
    tumours.loc[tumours.index[3], "mask"] = None
    small = tmp_path / "manifest.csv"
    pd.concat([tumours, m[m.label == "normal"].head(1)]).to_csv(small, index=False)
    out = tmp_path / "features.csv"
    table = extract_manifest_to_csv(small, out, preset("radiograph"))
    assert list(table.status) == ["ok", "error", "ok", "error", "error"]
    assert "DOES_NOT_EXIST.png: file not found" in table.error.iloc[1]
    assert "the mask is empty" in table.error.iloc[3]  # a normal radiograph's blank mask
    assert table.error.iloc[4] == "no mask in the manifest"
    written = pd.read_csv(out)
    assert written.shape == table.shape and "feat_cm_joint_maximum__2d_averaged" in written.columns
    settings = json.loads((tmp_path / "features.settings.json").read_text())
    assert settings["settings"]["name"] == "radiograph" and settings["failed"] == 3


def test_3d_features_from_dicom_and_rtstruct_equal_nifti():
    base = shared("sts_ct_mr_pet")
    dicom = extract_features(base / "dicom" / "STS_002" / "PET" / "image", base / "dicom" / "STS_002" / "PET" / "mask" / "RS.dcm",
                             preset("pet"))
    nifti = extract_features(base / "nifti" / "STS_002" / "PET_image.nii.gz", base / "nifti" / "STS_002" / "PET_mask.nii.gz",
                             preset("pet"))
    a, b = to_wide(dicom), to_wide(nifti)
    assert a.keys() == b.keys()
    assert np.allclose([a[k] for k in a], [b[k] for k in a], rtol=1e-4, equal_nan=True)
    assert a["feat_stat_maximum"] > 1.0  # SUV, not raw counts


def test_case_csv_and_settings_written(btxrd_dir, tmp_path):
    out = tmp_path / "one" / "features.csv"
    extract_case_to_csv(btxrd_dir / "images" / "IMG000001.png", btxrd_dir / "masks" / "IMG000001.png", out)
    assert pd.read_csv(out).shape[0] == 218
    assert json.loads((tmp_path / "one" / "features.settings.json").read_text())["settings"]["name"] == "radiograph"
