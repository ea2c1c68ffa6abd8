import shutil

import pandas as pd
from PIL import Image

from osteolens.data.fingerprints import METHOD, training_fingerprints, training_matches
from osteolens.data.importers import import_folder


def test_a_training_image_is_recognised_renamed_re_encoded_or_resized_and_others_are_not(btxrd_dir, btxrd_manifest, tmp_path):
    trained = ["IMG000004", "IMG000005", "IMG000011"]
    record = training_fingerprints(btxrd_manifest, trained)
    assert record["method"] == METHOD and record["n_images"] == 3 and record["split"] == "train"
    assert len(record["pixels"]) == len(record["perceptual"]) == 3
    assert all(len(h) == 16 and int(h, 16) >= 0 for h in record["pixels"] + record["perceptual"])

    # a site's folder: one training image renamed, one saved as JPEG, one enlarged, and two images never trained on
    folder = tmp_path / "site"
    folder.mkdir()
    shutil.copy(btxrd_dir / "images" / "IMG000004.png", folder / "renamed.png")
    grey = Image.open(btxrd_dir / "images" / "IMG000005.png").convert("L")
    grey.save(folder / "as_jpeg.jpg", quality=85)
    Image.open(btxrd_dir / "images" / "IMG000011.png").resize((512, 512)).save(folder / "enlarged.png")
    for name in ("IMG000001.png", "IMG000012.png"):
        shutil.copy(btxrd_dir / "images" / name, folder / name)
    names = ["renamed.png", "as_jpeg.jpg", "enlarged.png", "IMG000001.png", "IMG000012.png"]
    pd.DataFrame({"image": names, "label": ["malignant"] * 5, "patient_id": list("abcde")}).to_csv(tmp_path / "labels.csv", index=False)
    site = import_folder(folder, tmp_path / "labels.csv", tmp_path / "manifest").manifest_path
    ids = pd.read_csv(site, dtype=str)["case_id"].tolist()
    found = training_matches(record, site, ids)
    assert sorted(found) == sorted(ids[:3])
    assert training_matches({**record, "pixels": [], "perceptual": []}, site, ids) == []
