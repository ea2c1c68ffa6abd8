"""The refiner's malignancy head, from training through export to the analysis and the fitted combination."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from osteolens.errors import OsteolensError


@pytest.fixture(scope="module")
def malignancy_refined(tiny_source, tiny_malignancy_refiner_run, tmp_path_factory):
    from osteolens.models.refiner import attach_refiner

    out = tmp_path_factory.mktemp("malignancy_refined") / "tiny"
    return out, attach_refiner(tiny_source, tiny_malignancy_refiner_run[0], out, check_views=6)


@pytest.fixture(scope="module")
def lesion_val_split(btxrd_manifest, tmp_path_factory):
    """A split file whose validation part is 24 benign, 24 malignant and 6 normal BTXRD images of distinct groups."""
    from osteolens.data.manifest import load_manifest

    f = load_manifest(btxrd_manifest).to_frame().drop_duplicates("group_id")
    picked = pd.concat([f[f.label == k].iloc[20:20 + n] for k, n in (("normal", 6), ("benign", 24), ("malignant", 24))])
    path = tmp_path_factory.mktemp("lesion_split") / "splits.csv"
    pd.DataFrame({"case_id": picked["case_id"], "group_id": picked["group_id"], "split_group": picked["group_id"],
                  "label": picked["label"], "centre": picked["centre"], "split": "val"}).to_csv(path, index=False)
    return btxrd_manifest, path


@pytest.fixture(scope="module")
def looking_model(malignancy_refined, lesion_val_split, tmp_path_factory):
    """The shipped network with the tiny malignancy refiner and a second look that reads it, as if trained with
    :func:`lesion_val_split` (so that the fit runs on its 54 validation images)."""
    from osteolens.checksums import sha256_file
    from osteolens.inference.postprocess import MaskPostprocess
    from osteolens.models.registry import resolve_model

    folder = tmp_path_factory.mktemp("looking") / "m"
    shutil.copytree(resolve_model("osteolens-radiograph"), folder)
    shutil.copyfile(malignancy_refined[0] / "refiner.onnx", folder / "refiner.onnx")
    meta = json.loads((folder / "metadata.json").read_text())
    meta["refiner"] = malignancy_refined[1]["refiner"]
    meta["calibration"]["second_look"] = {"context": 3.0, "combine": "replace", "max_zoom": 6.0, "lesions": 1,
                                          "network": "refiner", "seed": MaskPostprocess.from_calibration(meta["calibration"]).to_dict()}
    manifest, splits = lesion_val_split
    meta["training"].update(manifest=str(manifest), splits=str(splits), splits_sha256=sha256_file(splits))
    (folder / "metadata.json").write_text(json.dumps(meta))
    return folder


@pytest.fixture(scope="module")
def fitted(looking_model, tmp_path_factory):
    """:func:`looking_model` with its lesion malignancy reading fitted on its 54 validation images."""
    from osteolens.models.lesion_calibration import calibrate_lesion_malignancy

    out = tmp_path_factory.mktemp("fitted") / "m"
    return out, calibrate_lesion_malignancy(looking_model, out, version="9.9.9")


def test_the_head_is_trained_selected_and_exported_beside_the_mask(tiny_malignancy_refiner_run, malignancy_refined):
    from osteolens.models.refiner import FLOAT16_TOLERANCE, LesionRefiner
    from osteolens.models.registry import load_model

    run, summary = tiny_malignancy_refiner_run
    assert 0.0 <= summary["best_val_view_malignancy_auc"] <= 1.0
    assert summary["selection"] == "val_view_dice + val_view_malignancy_auc"
    assert (run / "metrics.csv").read_text().splitlines()[0] == "epoch,lr,loss,val_view_dice,val_view_malignancy_auc,minutes"
    r = malignancy_refined[1]["refiner"]
    assert r["outputs"] == ["mask_logits", "malignancy_logit"] and "malignancy against benign" in r["task"]
    assert r["training"]["best_val_view_malignancy_auc"] == summary["best_val_view_malignancy_auc"]
    model = load_model(malignancy_refined[0])
    assert model.reads_lesion_malignancy
    x = np.random.default_rng(0).normal(size=(3, 3, 64, 64)).astype(np.float32)
    net = LesionRefiner(64, pretrained=False, malignancy_head=True)
    net.load_state_dict(torch.load(run / "best.pt", weights_only=True))
    with torch.no_grad():
        mask, malignancy = net.eval()(torch.from_numpy(x))
    got = model.run_refiner(x)
    assert got["malignancy_logit"].shape == (3,)
    assert np.abs(1 / (1 + np.exp(-got["malignancy_logit"])) - torch.sigmoid(malignancy).numpy()).max() < FLOAT16_TOLERANCE
    assert np.abs(1 / (1 + np.exp(-got["mask_logits"])) - torch.sigmoid(mask).numpy()).max() < FLOAT16_TOLERANCE


def test_the_analysis_reads_the_top_lesions_malignancy_and_combines_it_once_fitted(looking_model, btxrd_dir):
    from osteolens.inference.analyze import analyze_image
    from osteolens.inference.lesion_malignancy import combined_probabilities
    from osteolens.inference.second_look import view_source, views_outputs
    from osteolens.io.images import read_image
    from osteolens.models.registry import load_model

    model = load_model(looking_model, threads=1)
    arr, props = read_image(btxrd_dir / "images" / "IMG000004.png")  # an osteosarcoma of the foot
    clinical = {"age": 52, "sex": "M", "region": "lower limb", "view": "frontal"}
    res = analyze_image(model, arr, props, clinical)
    reading = res.lesion_malignancy
    assert reading["whole_image"] == [round(p, 6) for p in (res.p_normal, res.p_benign, res.p_malignant)]
    view = tuple(reading["view"])
    assert model.refiner_image_size == 64  # the tiny refiner's views are cut as its 64-px training cache was made
    _, logits = views_outputs(model, view_source(model, res.grey, "refiner"), [view], arr.shape[:2], None, "refiner")
    assert reading["logit"] == pytest.approx(float(logits[0]), abs=1e-5)
    settings = {"main_weight": 0.5, "lesion_weight": 2.0, "bias": 1.0, "replaced": {}}
    calib = {**model.metadata["calibration"], "lesion_malignancy": settings}
    fitted = replace(model, metadata={**model.metadata, "calibration": calib})
    again = analyze_image(fitted, arr, props, clinical)
    expected = combined_probabilities(np.array(reading["whole_image"]), reading["logit"], settings)
    assert [again.p_normal, again.p_benign, again.p_malignant] == pytest.approx(expected.tolist(), abs=1e-5)
    assert again.p_normal == res.p_normal and again.p_benign != pytest.approx(res.p_benign, abs=1e-3)
    assert again.lesion_malignancy == reading
    assert res.to_json()["lesion_malignancy"] == reading


def test_the_combination_is_fitted_on_validation_with_the_thresholds_chosen_again(looking_model, malignancy_refined,
                                                                                  fitted, tmp_path):
    from osteolens.checksums import sha256_file
    from osteolens.models.lesion_calibration import calibrate_lesion_malignancy
    from osteolens.models.registry import load_model

    folder, meta = fitted
    lm = meta["calibration"]["lesion_malignancy"]
    source = json.loads((looking_model / "metadata.json").read_text())["calibration"]
    assert lm["replaced"] == {k: source[k] for k in ("malignant_threshold", "uncertainty_threshold")}
    assert lm["fitted_on"]["n_images"] == 54  # normal images with a view do not enter the fit
    assert 5 <= lm["n_benign"] <= 24 and 5 <= lm["n_malignant"] <= 24
    assert lm["n_benign"] + lm["n_malignant"] <= lm["fitted_on"]["n_with_view"]
    assert set(lm["validation"]["auc_malignant"]) == {"whole_image", "combined"}
    assert meta["calibration"]["val_malignant_sensitivity"] >= 0.92  # the recorded target, on the combined readings
    assert meta["calibration"]["second_look"] == source["second_look"]
    for name in ("model.onnx", "refiner.onnx"):
        assert sha256_file(folder / name) == sha256_file(looking_model / name)
    assert meta["version"] == "9.9.9" and "lesion malignancy reading" in meta["changes"][-1]
    assert load_model(folder).metadata["calibration"]["lesion_malignancy"] == lm
    with pytest.raises(OsteolensError, match="its lesion refiner has no malignancy head"):
        calibrate_lesion_malignancy("osteolens-radiograph", tmp_path / "y")
    with pytest.raises(OsteolensError, match="no second look reads its refiner"):
        calibrate_lesion_malignancy(malignancy_refined[0], tmp_path / "y")


def test_the_card_says_whether_the_reading_changes_the_probabilities(malignancy_refined, fitted, tmp_path):
    from osteolens.reporting.model_card import write_model_card

    folder = tmp_path / "plain"
    shutil.copytree(malignancy_refined[0], folder)
    card = write_model_card(folder, accuracy=[]).read_text()
    assert "also reads the view's lesion as malignant or benign" in card and "so it changes no probability" in card
    shutil.copytree(fitted[0], tmp_path / "fitted")
    lm = fitted[1]["calibration"]["lesion_malignancy"]
    card = write_model_card(tmp_path / "fitted", accuracy=[]).read_text()
    assert f"main x {lm['main_weight']:.2f} + lesion x {lm['lesion_weight']:.2f}" in card
    assert f"malignant AUC {lm['validation']['auc_malignant']['whole_image']:.3f} -> " in card


def test_the_cli_fits_the_reading_and_says_what_it_changed(looking_model, tmp_path):
    from typer.testing import CliRunner

    from osteolens.cli import app
    from osteolens.models.registry import load_model

    r = CliRunner().invoke(app, ["fit-lesion-malignancy", str(looking_model), "--out", str(tmp_path / "m"),
                                 "--version", "9.9.9"])
    assert r.exit_code == 0, r.output
    lm = load_model(tmp_path / "m").metadata["calibration"]["lesion_malignancy"]
    auc = lm["validation"]["auc_malignant"]
    assert f"auc_malignant {auc['whole_image']:.3f} -> {auc['combined']:.3f}" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["fit-lesion-malignancy", "osteolens-radiograph", "--out", str(tmp_path / "x")])
    assert isinstance(r.exception, OsteolensError) and "has no malignancy head" in str(r.exception)
