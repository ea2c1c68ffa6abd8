import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from osteolens.errors import OsteolensError


@pytest.fixture(scope="module")
def refined_model(tiny_source, tiny_refiner_run, tmp_path_factory):
    from osteolens.models.refiner import attach_refiner

    out = tmp_path_factory.mktemp("refined") / "tiny"
    return out, attach_refiner(tiny_source, tiny_refiner_run[0], out, check_views=6)


def test_attach_exports_the_refiner_beside_an_unchanged_network(refined_model, tiny_source, tiny_refiner_run):
    from osteolens.checksums import sha256_file
    from osteolens.models.refiner import FLOAT16_TOLERANCE, LesionRefiner
    from osteolens.models.registry import load_model

    out, meta = refined_model
    assert sha256_file(out / "model.onnx") == sha256_file(tiny_source / "model.onnx")
    r = meta["refiner"]
    assert r["file"] == "refiner.onnx" and r["input_size"] == 64 and r["image_size"] == 64 and r["sha256"] == sha256_file(out / "refiner.onnx")
    assert r["export_check"]["max_abs_diff_probability"] <= 1e-4 and r["training"]["epochs_run"] == 1
    assert "second_look" not in meta["calibration"]  # chosen afterwards, on validation
    model = load_model(out)
    x = np.random.default_rng(0).normal(size=(3, 3, 64, 64)).astype(np.float32)
    net = LesionRefiner(64, pretrained=False)
    net.load_state_dict(torch.load(tiny_refiner_run[0] / "best.pt", weights_only=True))
    with torch.no_grad():
        ref = torch.sigmoid(net.eval()(torch.from_numpy(x))).numpy()
    got = 1 / (1 + np.exp(-model.run_refiner(x)["mask_logits"]))
    assert got.shape == (3, 1, 64, 64) and np.abs(got - ref).max() < FLOAT16_TOLERANCE  # weights stored as float16
    assert r["export_check"]["float16_weights"]["weights"] > 10


def test_a_tampered_or_missing_refiner_is_refused(refined_model, tmp_path):
    from osteolens.models.registry import ModelIntegrityError, load_model

    copy = tmp_path / "m"
    shutil.copytree(refined_model[0], copy)
    with open(copy / "refiner.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelIntegrityError, match="refiner.onnx: sha256"):
        load_model(copy)
    (copy / "refiner.onnx").unlink()
    with pytest.raises(OsteolensError, match="refiner.onnx: missing from the model folder"):
        load_model(copy)


def test_attach_refuses_a_refiner_of_other_splits_and_the_models_own_folder(tiny_source, tiny_refiner_run, tmp_path):
    from osteolens.models.refiner import attach_refiner

    run = tmp_path / "run"
    shutil.copytree(tiny_refiner_run[0], run)
    cfg = json.loads((run / "config.json").read_text())
    other = tmp_path / "splits.csv"
    other.write_text(open(cfg["splits"]).read().replace(",val\n", ",train\n", 1))
    cfg["splits"] = str(other)
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(OsteolensError, match="not the split file"):
        attach_refiner(tiny_source, run, tmp_path / "out")
    with pytest.raises(OsteolensError, match="to a copy, not to the model folder itself"):
        attach_refiner(tiny_source, tiny_refiner_run[0], tiny_source)


def test_a_recalibrated_copy_keeps_the_refiner(refined_model, tmp_path):
    from osteolens.models.recalibrate import recalibrate_model
    from osteolens.models.registry import load_model

    out = tmp_path / "copy"
    recalibrate_model(refined_model[0], out, crop_uniform_border=1.5 / 255)
    assert (out / "refiner.onnx").read_bytes() == (refined_model[0] / "refiner.onnx").read_bytes()
    assert load_model(out).refiner is not None


def test_the_second_look_reads_the_refiner_over_each_lesion_view_and_nothing_else(refined_model, btxrd_dir):
    """The shipped network's first look, refined by the tiny refiner over the views of its top three lesions."""
    from osteolens.inference.analyze import analyze_image
    from osteolens.inference.postprocess import MaskPostprocess
    from osteolens.inference.second_look import combine, lesion_views, views_probability
    from osteolens.io.images import read_image
    from osteolens.models.registry import load_model
    from osteolens.transforms.preprocess import network_grey

    shipped = load_model("osteolens-radiograph", threads=1)
    tiny = load_model(refined_model[0], threads=1)
    calib = {k: v for k, v in shipped.metadata["calibration"].items() if k != "second_look"}  # the first look alone
    model = replace(shipped, refiner=None, metadata={**shipped.metadata, "calibration": calib})
    seed = MaskPostprocess.from_calibration(calib)
    settings = {"context": 3.0, "combine": "replace", "max_zoom": 6.0, "seed": seed.to_dict(), "network": "refiner",
                "lesions": 3}
    as_shipped = {**tiny.metadata["refiner"], "image_size": model.image_size}  # views cut as the network reads the image
    looking = replace(model, refiner=tiny.refiner, metadata={**model.metadata, "refiner": as_shipped,
                                                            "calibration": {**calib, "second_look": settings}})
    arr, props = read_image(btxrd_dir / "images" / "IMG000004.png")  # an osteosarcoma of the foot: 2 lesions found
    clinical = {"age": 52, "sex": "M", "region": "lower limb", "view": "frontal"}
    first, second = analyze_image(model, arr, props, clinical), analyze_image(looking, arr, props, clinical)
    assert (first.p_malignant, first.uncertainty, first.label) == (second.p_malignant, second.uncertainty, second.label)
    views = lesion_views(first.mask_probability, first.p_benign + first.p_malignant, seed, 3.0, 6.0, 3)
    assert len(views) == 2
    inside = np.zeros(arr.shape[:2], bool)
    for x0, y0, x1, y1 in views:
        inside[y0:y1, x0:x1] = True
    assert 0 < inside.mean() < 0.5
    assert np.array_equal(first.mask_probability[~inside], second.mask_probability[~inside])
    seen = network_grey(first.grey, model.image_size)  # the views are cut from the image as the network read it
    expected = combine(first.mask_probability, views, views_probability(looking, seen, views, arr.shape[:2], None, "refiner"),
                       "replace")
    assert np.allclose(second.mask_probability, expected, atol=1e-6)
    assert np.abs(expected - first.mask_probability)[inside].max() > 0.05
    with pytest.raises(OsteolensError, match="has no lesion refiner"):
        views_probability(model, seen, views, arr.shape[:2], None, "refiner")
    # a refiner trained on a 640-px cache reads the same views cut from the image resized to 640 px
    fine = replace(looking, metadata={**looking.metadata, "refiner": {**looking.metadata["refiner"], "image_size": 640}})
    finer = analyze_image(fine, arr, props, clinical)
    seen640 = network_grey(first.grey, 640)
    expected640 = combine(first.mask_probability, views,
                          views_probability(fine, seen640, views, arr.shape[:2], None, "refiner"), "replace")
    assert np.allclose(finer.mask_probability, expected640, atol=1e-6)
    assert np.abs(expected640 - expected)[inside].max() > 0.01  # the finer source changes what the refiner sees


def test_the_card_names_the_refiner_and_the_second_look_that_reads_it(refined_model, tmp_path):
    from osteolens.inference.postprocess import MaskPostprocess
    from osteolens.reporting.model_card import write_model_card

    folder = tmp_path / "m"
    shutil.copytree(refined_model[0], folder)
    card = write_model_card(folder, accuracy=[]).read_text()
    meta = json.loads((folder / "metadata.json").read_text())
    assert f"Lesion refiner `refiner.onnx` (sha256 `{meta['refiner']['sha256']}`)" in card
    assert "at 64 px" in card and "weights stored as float16" in card and "No second look uses it" in card
    meta["calibration"]["second_look"] = {"context": 3.0, "combine": "replace", "max_zoom": 6.0, "lesions": 3,
                                          "network": "refiner", "seed": MaskPostprocess().to_dict()}
    (folder / "metadata.json").write_text(json.dumps(meta))
    card = write_model_card(folder, accuracy=[]).read_text()
    assert "over the view of each of the top 3 lesions of images not called normal (view side 3 x the lesion's, at most " \
           "6 x enlarged; its mask probability replaces the network's there)" in card


def test_the_cli_trains_a_refiner_from_a_config_and_attaches_it_with_a_new_version(tiny_source, tiny_dataset, tmp_path):
    from typer.testing import CliRunner

    from osteolens.cli import app
    from osteolens.models.registry import load_model

    config = tmp_path / "refiner.json"
    config.write_text(json.dumps({"manifest": str(tiny_dataset / "manifest.csv"), "splits": str(tiny_dataset / "splits.csv"),
                                  "image_size": 64, "input_size": 64, "epochs": 1, "lesion_views": 4, "normal_views": 2,
                                  "cache_dir": str(tiny_dataset / "cache")}))
    runner = CliRunner()
    r = runner.invoke(app, ["train-refiner", str(config), "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert "best epoch 1 of 1" in r.output and "validation view Dice" in r.output
    r = runner.invoke(app, ["attach-refiner", str(tiny_source), "--refiner", str(tmp_path / "run"), "--out",
                            str(tmp_path / "model"), "--version", "9.9.9"])
    assert r.exit_code == 0, r.output
    meta = load_model(tmp_path / "model").metadata
    assert meta["version"] == "9.9.9" and meta["changes"][-1].startswith("9.9.9: tiny-test-model ")
    r = runner.invoke(app, ["train-refiner", str(tmp_path / "missing.json"), "--out", str(tmp_path / "run2")])
    assert isinstance(r.exception, OsteolensError) and "missing.json: config not found" in str(r.exception)
