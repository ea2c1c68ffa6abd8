import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from osteolens.cli import app
from osteolens.errors import OsteolensError
from osteolens.inference.analyze import analyze_image
from osteolens.io.images import read_image
from osteolens.models.recalibrate import COMPARED, recalibrate_model
from osteolens.models.registry import load_model
from tests.models.conftest import PP

TOL = 1.5 / 255


@pytest.fixture(scope="module")
def cropping_copy(tiny_source, tmp_path_factory):
    out = tmp_path_factory.mktemp("recal") / "tiny-crop"
    return out, recalibrate_model(tiny_source, out, crop_uniform_border=TOL, version="1.0.1")


def test_the_copy_is_the_same_network_with_a_border_crop_and_its_own_calibration(cropping_copy, tiny_source):
    out, meta = cropping_copy
    source = json.loads((tiny_source / "metadata.json").read_text())
    assert (out / "model.onnx").read_bytes() == (tiny_source / "model.onnx").read_bytes()
    assert meta["sha256"] == source["sha256"] and meta["version"] == "1.0.1" and meta["name"] == source["name"]
    assert meta["preprocessing"]["crop_uniform_border"] == TOL and "crop_uniform_border" not in source["preprocessing"]
    cal = meta["calibration"]
    assert cal["mask_postprocess"] == PP and "val_mask_postprocess" not in cal  # kept; its scores were the source's
    assert cal["temperature"] != source["calibration"]["temperature"]  # cut borders move the logits
    rec = meta["recalibration"]
    assert rec["crop_uniform_border"] == {"source": None, "copy": TOL} and rec["validation"]["n_images"] == 15
    assert set(rec["validation"]["figures"]) == set(COMPARED)
    for k, v in rec["validation"]["figures"].items():
        assert v["change"] == pytest.approx(v["copy"] - v["source"], abs=2e-4), k
        assert v["copy"] == pytest.approx(cal[k], abs=1e-4), k
    # the source's figures are its own calibration, recomputed from its ONNX outputs
    assert rec["validation"]["figures"]["val_macro_auc"]["source"] == pytest.approx(source["calibration"]["val_macro_auc"], abs=1e-3)
    assert meta["changes"][-1].startswith("1.0.1: tiny-test-model") and "flat borders cropped" in meta["changes"][-1]


def test_the_copy_loads_and_cuts_a_letterbox_in_analysis(cropping_copy, tiny_source, btxrd_dir, tmp_path):
    out, _ = cropping_copy
    grey = np.asarray(Image.open(btxrd_dir / "images" / "IMG000004.png").convert("L"))
    Image.fromarray(np.pad(grey, 16)).save(tmp_path / "framed.png")
    Image.fromarray(grey).save(tmp_path / "plain.png")
    copy = load_model(out)
    framed = analyze_image(copy, *read_image(tmp_path / "framed.png"))
    plain = analyze_image(copy, *read_image(tmp_path / "plain.png"))
    assert framed.content_box == [16, 16, 272, 272] and framed.p_malignant == plain.p_malignant
    source_framed = analyze_image(load_model(tiny_source), *read_image(tmp_path / "framed.png"))
    assert source_framed.content_box is None and source_framed.p_malignant != framed.p_malignant


def test_recalibrating_without_the_crop_gives_back_the_sources_calibration(cropping_copy, tiny_source, tmp_path):
    out, _ = cropping_copy
    back = recalibrate_model(out, tmp_path / "back", crop_uniform_border=None)
    source = json.loads((tiny_source / "metadata.json").read_text())["calibration"]
    assert "crop_uniform_border" not in back["preprocessing"] and back["version"] == "1.0.1"
    # equal up to ONNX vs PyTorch (a model trained one step has a huge temperature, hence rel)
    for k in ("temperature", "malignant_threshold", "uncertainty_threshold", "val_macro_auc", "val_dice"):
        assert back["calibration"][k] == pytest.approx(source[k], rel=1e-4, abs=2e-3), k


def test_recalibrate_refuses_its_own_folder_another_split_and_contradictory_options(cropping_copy, tiny_dataset, tmp_path):
    out, _ = cropping_copy
    with pytest.raises(OsteolensError, match="own folder"):
        recalibrate_model(out, out)
    other = tmp_path / "splits.csv"
    other.write_text((tiny_dataset / "splits.csv").read_text().replace(",val", ",train", 1))
    with pytest.raises(OsteolensError, match="not the split file"):
        recalibrate_model(out, tmp_path / "x", splits=other)
    runner = CliRunner()
    r = runner.invoke(app, ["recalibrate", str(out), "--out", str(tmp_path / "y"), "--crop-border", "0.01", "--no-crop"])
    assert isinstance(r.exception, OsteolensError) and "contradict" in str(r.exception)  # `main` prints it, exit 2
    assert not (tmp_path / "y").exists()
    r = runner.invoke(app, ["recalibrate", str(out), "--out", str(tmp_path / "z"), "--no-crop", "--version", "1.0.2"])
    assert r.exit_code == 0, r.output
    assert "tiny-test-model 1.0.2" in r.output and "val_macro_auc" in r.output
    assert "crop_uniform_border" not in json.loads((tmp_path / "z" / "metadata.json").read_text())["preprocessing"]


def test_the_copys_card_says_how_images_are_cut_and_what_recalibration_changed(cropping_copy, tmp_path):
    import shutil

    from osteolens.reporting.model_card import write_model_card

    out, meta = cropping_copy
    folder = tmp_path / "card"
    shutil.copytree(out, folder)
    card = write_model_card(folder, accuracy=[]).read_text()
    assert "Flat borders are cut before the network reads the image: edge rows and columns whose grey spans at most 1.5 of 255" in card
    auc = meta["recalibration"]["validation"]["figures"]["val_macro_auc"]
    assert (f"The network of tiny-test-model {meta['recalibration']['source_model']['version']}, calibrated again on the 15 "
            f"validation images") in card and f"macro auc {auc['source']:.3f} -> {auc['copy']:.3f}" in card
    assert f"temperature {meta['calibration']['temperature']:.3f}" in card
    assert "Mask post-processing (kept from the source model, not re-scored on this one)" in card
