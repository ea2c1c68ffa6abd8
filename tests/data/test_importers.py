import json

import pandas as pd
import pytest
from PIL import Image

from osteolens.data.importers import assign_consecutive_groups, import_folder
from osteolens.data.manifest import load_manifest
from osteolens.errors import ManifestError


def test_btxrd_import_counts(btxrd_import, btxrd_manifest):
    m = load_manifest(btxrd_manifest)
    f = m.to_frame()
    assert len(f) == 3171
    assert f["label"].value_counts().to_dict() == {"normal": 1591, "benign": 1292, "malignant": 288}
    assert f["centre"].value_counts().to_dict() == {"1": 2495, "2": 460, "3": 216}
    assert f["group_id"].notna().all() and f["group_id"].nunique() == 1095
    assert f["mask"].notna().all()
    assert (f.loc[f.label == "normal", "subtype"].isna()).all()
    assert f.loc[f.label != "normal", "subtype"].notna().all()
    desc = json.loads((btxrd_manifest.parent / "dataset.json").read_text())
    assert desc["n_groups"] == 1095 and "CC BY-NC-ND" in desc["licence"]
    assert any("IMG001276" in w for w in btxrd_import.warnings)


def test_btxrd_first_case_fields(btxrd_manifest):
    m = load_manifest(btxrd_manifest)
    c = m.by_id()["IMG000001"]
    assert (c.label, c.subtype, c.age, c.sex, c.site, c.region, c.view, c.centre) == (
        "malignant", "other mt", 48.0, "F", "hip bone", "pelvis", "frontal", "1")
    assert m.resolve(c.image).is_file() and m.resolve(c.mask).is_file()


def test_btxrd_consecutive_same_patient_share_a_group(btxrd_manifest):
    f = load_manifest(btxrd_manifest).to_frame()
    # every group holds one centre, age, sex and diagnosis
    per_group = f.groupby("group_id")[["centre", "age", "sex", "label", "subtype"]].nunique(dropna=False)
    assert (per_group <= 1).all().all()
    # and groups are runs of consecutive rows
    runs = (f["group_id"] != f["group_id"].shift()).cumsum()
    assert runs.nunique() == f["group_id"].nunique()


def test_assign_consecutive_groups_splits_runs():
    assert assign_consecutive_groups([1, 1, 2, 2, 1]) == ["g00001", "g00001", "g00002", "g00002", "g00003"]


def test_import_folder_with_labels_and_masks(tmp_path, btxrd_dir):
    images, masks = tmp_path / "imgs", tmp_path / "masks"
    images.mkdir(); masks.mkdir()
    for name in ("IMG000001", "IMG000004"):
        Image.open(btxrd_dir / "images" / f"{name}.png").save(images / f"{name}.png")
        Image.open(btxrd_dir / "masks" / f"{name}.png").save(masks / f"{name}.png")
    (images / "extra.png").write_bytes((images / "IMG000001.png").read_bytes())
    pd.DataFrame({"image": ["IMG000001.png", "IMG000004.png"], "label": ["Malignant", "malignant"],
                  "patient_id": ["p1", "p1"], "age": [48, 52], "centre": [1, 1]}).to_csv(tmp_path / "labels.csv", index=False)
    result = import_folder(images, tmp_path / "labels.csv", tmp_path / "out", masks=masks)
    f = result.manifest.to_frame()
    assert f["label"].tolist() == ["malignant", "malignant"]
    assert f["group_id"].tolist() == ["p1", "p1"]
    assert f["mask"].notna().all()
    assert any("extra.png" in w for w in result.warnings)
    reloaded = load_manifest(result.manifest_path)
    assert reloaded.resolve(reloaded.cases[0].image).is_file()


def test_import_folder_rejects_unknown_label(tmp_path):
    (tmp_path / "imgs").mkdir()
    pd.DataFrame({"image": ["a.png"], "label": ["cancer"]}).to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(ManifestError, match="line 2: label 'cancer'"):
        import_folder(tmp_path / "imgs", tmp_path / "labels.csv", tmp_path / "out")


def test_import_folder_refuses_two_rows_for_one_image_and_names_rows_without_an_image(tmp_path, btxrd_dir):
    (tmp_path / "imgs").mkdir()
    Image.open(btxrd_dir / "images" / "IMG000004.png").save(tmp_path / "imgs" / "b.png")
    pd.DataFrame({"image": ["b.png", "c.png", "b.png"], "label": ["malignant", "normal", "benign"]}).to_csv(
        tmp_path / "labels.csv", index=False)
    with pytest.raises(ManifestError, match=r"labels\.csv: 1 case\(s\) have more than one row \('b' on lines 2, 4\)"):
        import_folder(tmp_path / "imgs", tmp_path / "labels.csv", tmp_path / "out")
    pd.DataFrame({"image": ["b.png", "c.png"], "label": ["malignant", "normal"]}).to_csv(tmp_path / "labels.csv", index=False)
    result = import_folder(tmp_path / "imgs", tmp_path / "labels.csv", tmp_path / "out")
    assert any("1 row(s) name an image not in" in w and "(e.g. c)" in w for w in result.warnings)
