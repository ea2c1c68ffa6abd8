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
    assert meta["preprocessing"]["resize"].startswith("the image inside its flat borders")  # says what the network reads
    assert source["preprocessing"]["resize"].startswith("the whole image, inside a DICOM's Pixel Padding Value frame")
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
    assert back["preprocessing"]["resize"].startswith("the whole image")
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


# --- fitting on a site's own images (--local) ---------------------------------------------------------------------

def _site_folder(btxrd_manifest, exclude, out, counts=(("malignant", 20), ("benign", 12), ("normal", 12)), masks=True,
                 extra=()):
    """A site's folder as `osteolens data import-folder` takes it, from real BTXRD cases outside ``exclude``."""
    import shutil

    import pandas as pd

    from osteolens.data.importers import import_folder
    from osteolens.data.manifest import load_manifest

    m = load_manifest(btxrd_manifest)
    f = m.to_frame()
    f = f[~f["case_id"].isin(exclude)].drop_duplicates("group_id")
    picked = pd.concat([f[f.label == k].iloc[:n] for k, n in counts])
    assert len(picked) == sum(n for _, n in counts)
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    rows = []
    for _, c in picked.iterrows():
        name = f"site_{c.case_id}.png"
        shutil.copy(m.resolve(c.image), out / "images" / name)
        if masks and c.label != "normal":
            shutil.copy(m.resolve(c["mask"]), out / "masks" / name)
        rows.append({"image": name, "label": c.label, "patient_id": f"p{c.group_id}", "age": c.age, "sex": c.sex,
                     "region": c.region, "view": c.view})
    for name, source_path, label in extra:  # more images, e.g. a training image under a new name
        shutil.copy(source_path, out / "images" / name)
        rows.append({"image": name, "label": label, "patient_id": f"x{name}"})
    pd.DataFrame(rows).to_csv(out / "labels.csv", index=False)
    return import_folder(out / "images", out / "labels.csv", out / "site", masks=out / "masks").manifest_path


@pytest.fixture(scope="module")
def site(btxrd_manifest, tiny_dataset, tmp_path_factory):
    """44 real BTXRD radiographs as a site's folder: none trained on by the tiny model or by the shipped one."""
    import pandas as pd

    from osteolens.data.fingerprints import training_matches

    candidates = pd.read_csv(btxrd_manifest, dtype=str).groupby("label").head(250)["case_id"]
    shipped = load_model("osteolens-radiograph").metadata["training"]["image_fingerprints"]
    exclude = set(pd.read_csv(tiny_dataset / "manifest.csv", dtype=str)["case_id"])
    exclude |= set(training_matches(shipped, btxrd_manifest, candidates)) | set(
        pd.read_csv(btxrd_manifest, dtype=str)["case_id"]) - set(candidates)
    return _site_folder(btxrd_manifest, exclude, tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="module")
def local_copy(site, tmp_path_factory):
    """The shipped model with its calibration fitted on the site's images."""
    from osteolens.models.recalibrate import recalibrate_on_local_data

    out = tmp_path_factory.mktemp("local") / "shipped-local"
    return out, recalibrate_on_local_data("osteolens-radiograph", out, site, version="site")


def test_a_local_recalibration_records_what_the_analysis_of_those_images_then_gives(local_copy, site, tmp_path):
    from osteolens.data.clinical import clinical_table
    from osteolens.data.manifest import load_manifest
    from osteolens.evaluation.calibration import expected_calibration_error
    from osteolens.inference.analyze import analyze
    from osteolens.models.recalibrate import APPLIED

    out, meta = local_copy
    shipped = load_model("osteolens-radiograph")
    assert (out / "model.onnx").read_bytes() == (shipped.folder / "model.onnx").read_bytes()
    assert meta["version"] == "site" and meta["training"] == shipped.metadata["training"]
    assert meta["preprocessing"] == shipped.metadata["preprocessing"]  # read as the shipped model reads (its border crop)
    rec = meta["recalibration"]["local"]
    assert rec["n_images"] == 44 and rec["n_groups"] == 44 and rec["labels"] == {"normal": 12, "benign": 12, "malignant": 20}
    assert rec["training_overlap_checked"] and rec["mask_threshold"] == "fitted on the local tumour masks"
    assert set(rec["figures"]) == set(APPLIED)
    cal = meta["calibration"]
    assert cal["temperature"] != shipped.metadata["calibration"]["temperature"]
    assert cal["mask_postprocess"] == shipped.metadata["calibration"]["mask_postprocess"]
    assert "calibration fitted on 44 local images (manifest.csv)" in meta["changes"][-1]

    # the real pipeline on the same files, once with the shipped model and once with the copy: the figures recorded
    # for each are the ones its analysis gives
    manifest = load_manifest(site)
    cases = manifest.cases
    clinical_table(cases).to_csv(tmp_path / "clinical.csv", index=False)
    y = np.array([("normal", "benign", "malignant").index(c.label) for c in cases])
    for who, model in (("source", shipped), ("copy", load_model(out))):
        results = analyze([manifest.resolve(c.image) for c in cases], tmp_path / who, model=model,
                          clinical_csv=tmp_path / "clinical.csv", overlays=False, report=False)
        probs = np.array([[r.p_normal, r.p_benign, r.p_malignant] for r in results])
        threshold = model.metadata["calibration"]["malignant_threshold"]
        figures = {k: v[who] for k, v in rec["figures"].items()}
        assert expected_calibration_error(y, probs) == pytest.approx(figures["ece"], abs=1e-4), who
        assert (probs[y == 2, 2] >= threshold).mean() == pytest.approx(figures["malignant_sensitivity"]), who
        assert (probs[y != 2, 2] < threshold).mean() == pytest.approx(figures["malignant_specificity"]), who
        assert np.mean([r.label == "indeterminate" for r in results]) == pytest.approx(figures["referred"]), who
    assert rec["figures"]["malignant_sensitivity"]["copy"] >= cal["malignant_target_sensitivity"] == 0.92
    assert rec["figures"]["ece"]["copy"] < rec["figures"]["ece"]["source"]  # fitted on these very images
    # how firmly 20 malignant images fix the threshold: an interval around it, and the sensitivity it was fitted for
    st = rec["malignant_threshold_stability"]
    assert st["threshold"]["ci_low"] < cal["malignant_threshold"] == st["threshold"]["value"] < st["threshold"]["ci_high"]
    assert st["sensitivity"]["value"] == rec["figures"]["malignant_sensitivity"]["copy"]
    assert st["sensitivity"]["ci_low"] < st["sensitivity"]["value"] and st["specificity"]["n"] == 44


def test_a_local_copys_card_says_what_it_was_fitted_on(local_copy, tmp_path):
    import shutil

    from osteolens.reporting.model_card import write_model_card

    out, meta = local_copy
    shutil.copytree(out, tmp_path / "card")
    card = write_model_card(tmp_path / "card", accuracy=[]).read_text()
    ece = meta["recalibration"]["local"]["figures"]["ece"]
    shipped = meta["recalibration"]["source_model"]["version"]
    assert (f"The network of osteolens-radiograph {shipped}, its calibration fitted on 44 local images (manifest.csv) "
            "(12 normal, 12 benign, 20 malignant; mask threshold fitted on the local tumour masks") in card
    assert f"ece {ece['source']:.3f} -> {ece['copy']:.3f}" in card and "optimistic" in card
    assert f"- Calibration on 44 local images (manifest.csv): temperature {meta['calibration']['temperature']:.3f}" in card
    t = meta["recalibration"]["local"]["malignant_threshold_stability"]["threshold"]
    assert f"ranges {t['ci_low']:.4f}-{t['ci_high']:.4f} (95%)" in card
    assert "(local sensitivity" in card and "validation sensitivity" not in card


def test_a_local_set_holding_a_training_image_is_refused_even_renamed(btxrd_manifest, tiny_dataset, tiny_source, tmp_path):
    import pandas as pd

    from osteolens.data.manifest import load_manifest
    from osteolens.models.recalibrate import recalibrate_on_local_data

    tiny = pd.read_csv(tiny_dataset / "manifest.csv", dtype=str)
    splits = pd.read_csv(tiny_dataset / "splits.csv", dtype=str)
    trained = tiny[tiny.case_id.isin(splits.case_id[splits.split == "train"])].iloc[0]
    held_out = tiny[tiny.case_id.isin(splits.case_id[splits.split == "val"])].iloc[0]
    site = _site_folder(btxrd_manifest, set(tiny.case_id), tmp_path / "s",
                        extra=[("scan_0001.png", trained.image, trained.label), ("scan_0002.png", held_out.image, held_out.label)])
    with pytest.raises(OsteolensError, match=r"1 image\(s\) are ones tiny-test-model was trained on, e\.g\. scan_0001"):
        recalibrate_on_local_data(tiny_source, tmp_path / "x", site)
    assert not (tmp_path / "x").exists()
    # the check can be skipped deliberately, and it is recorded
    meta = recalibrate_on_local_data(tiny_source, tmp_path / "y", site, check_overlap=False)
    assert meta["recalibration"]["local"]["training_overlap_checked"] is False
    # a model exported without fingerprints cannot be checked: said, not silently passed
    old = json.loads((tiny_source / "metadata.json").read_text())
    del old["training"]["image_fingerprints"]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "model.onnx").write_bytes((tiny_source / "model.onnx").read_bytes())
    (tmp_path / "old" / "metadata.json").write_text(json.dumps(old))
    clean = [c.case_id for c in load_manifest(site).cases if not c.case_id.startswith("scan_")]
    (tmp_path / "clean.csv").write_text("case_id,split\n" + "".join(f"{c},fit\n" for c in clean))
    with pytest.raises(OsteolensError, match="records no fingerprints of its training images"):
        recalibrate_on_local_data(tmp_path / "old", tmp_path / "z", site, tmp_path / "clean.csv", "fit")
    # an old export gains them from its training data, and is then checked like a new one
    from osteolens.models.recalibrate import add_training_fingerprints

    meta = add_training_fingerprints(tmp_path / "old", "9.9.9")
    assert meta["version"] == "9.9.9" and meta["changes"][-1].startswith("9.9.9: ") and "33 training images" in meta["changes"][-1]
    assert meta["training"]["image_fingerprints"] == json.loads((tiny_source / "metadata.json").read_text())["training"]["image_fingerprints"]


def test_a_local_set_too_small_unlabelled_or_without_masks(btxrd_manifest, btxrd_dir, tiny_dataset, tiny_source, tmp_path):
    import pandas as pd

    from osteolens.models.recalibrate import recalibrate_on_local_data

    exclude = set(pd.read_csv(tiny_dataset / "manifest.csv", dtype=str)["case_id"])
    few = _site_folder(btxrd_manifest, exclude, tmp_path / "few", counts=(("malignant", 8), ("normal", 30)))
    with pytest.raises(OsteolensError, match="8 malignant and 30 other images; a local calibration needs at least 20"):
        recalibrate_on_local_data(tiny_source, tmp_path / "x", few)
    unlabelled = _site_folder(btxrd_manifest, exclude, tmp_path / "unl",
                              extra=[("unread.png", btxrd_dir / "images" / "IMG000012.png", "")])
    with pytest.raises(OsteolensError, match="1 case.* without a normal/benign/malignant label, e.g. unread"):
        recalibrate_on_local_data(tiny_source, tmp_path / "x", unlabelled)
    no_masks = _site_folder(btxrd_manifest, exclude, tmp_path / "nm", masks=False)
    meta = recalibrate_on_local_data(tiny_source, tmp_path / "nm_out", no_masks)
    source = json.loads((tiny_source / "metadata.json").read_text())["calibration"]
    rec = meta["recalibration"]["local"]
    assert rec["mask_threshold"] == "kept from the source (local masks incomplete)" and "dice" not in rec["figures"]
    assert meta["calibration"]["mask_threshold"] == source["mask_threshold"] and meta["calibration"]["val_dice"] is None


def test_the_cli_fits_on_local_images_and_refuses_options_that_do_not_go_with_it(tiny_source, site, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["recalibrate", str(tiny_source), "--out", str(tmp_path / "a"), "--local", str(site), "--no-crop"])
    assert isinstance(r.exception, OsteolensError) and "--local keeps the model's own preparation" in str(r.exception)
    r = runner.invoke(app, ["recalibrate", str(tiny_source), "--out", str(tmp_path / "b"), "--target-sensitivity", "0.9"])
    assert isinstance(r.exception, OsteolensError) and "go with --local" in str(r.exception)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    r = runner.invoke(app, ["recalibrate", str(tiny_source), "--out", str(tmp_path / "c"), "--local", str(site),
                            "--target-sensitivity", "0.95", "--version", "1.0.0+site"])
    assert r.exit_code == 0, r.output
    assert "tiny-test-model 1.0.0+site" in r.output and "44 local images" in r.output and "ece" in r.output
    cal = json.loads((tmp_path / "c" / "metadata.json").read_text())["calibration"]
    assert cal["malignant_target_sensitivity"] == 0.95 and cal["val_malignant_sensitivity"] >= 0.95


def test_a_copy_that_cuts_noisy_borders_too_records_it_and_reads_a_noisy_frame_as_the_radiograph(
        cropping_copy, btxrd_dir, tmp_path):
    """``--noisy-border``: from the flat-cropping copy, a copy that also cuts noisy borders
    (:func:`osteolens.transforms.preprocess.border_box`). It says so in its metadata, its record and
    its card, and a radiograph inside a 32-px border of detector noise reads as the radiograph alone
    does, placed in the border's pixels (the flat-cropping copy reads the border as image)."""
    from osteolens.reporting.model_card import write_model_card

    flat_copy, _ = cropping_copy
    runner = CliRunner()
    out = tmp_path / "noisy"
    r = runner.invoke(app, ["recalibrate", str(flat_copy), "--out", str(out), "--noisy-border", "--version", "1.0.3"])
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["preprocessing"]["crop_noisy_border"] is True and meta["preprocessing"]["crop_uniform_border"] == TOL
    assert "and its noisy ones" in meta["preprocessing"]["resize"]
    assert meta["recalibration"]["crop_noisy_border"] == {"source": False, "copy": True}
    assert "flat and noisy borders cropped" in meta["changes"][-1]
    assert "Noisy borders are cut too" in write_model_card(out, accuracy=[]).read_text()

    grey = np.asarray(Image.open(btxrd_dir / "images" / "IMG000004.png").convert("L"))
    noise = np.random.default_rng(0).normal(8, 2.5, (256 + 64, 256 + 64))
    framed = np.clip(np.round(noise), 0, 255).astype(np.uint8)
    framed[32:-32, 32:-32] = grey
    Image.fromarray(framed).save(tmp_path / "framed.png")
    Image.fromarray(grey).save(tmp_path / "plain.png")
    noisy = load_model(out)
    inside = analyze_image(noisy, *read_image(tmp_path / "framed.png"))
    plain = analyze_image(noisy, *read_image(tmp_path / "plain.png"))
    assert inside.content_box == [32, 32, 288, 288] and inside.p_malignant == plain.p_malignant
    assert analyze_image(load_model(flat_copy), *read_image(tmp_path / "framed.png")).content_box is None

    # back to flat borders only; and noisy borders without the flat crop are refused
    back = recalibrate_model(out, tmp_path / "flat", crop_noisy_border=False)
    assert "crop_noisy_border" not in back["preprocessing"] and back["preprocessing"]["crop_uniform_border"] == TOL
    with pytest.raises(OsteolensError, match="needs the flat-border crop"):
        recalibrate_model(out, tmp_path / "x", crop_uniform_border=None, crop_noisy_border=True)
    assert "crop_noisy_border" not in recalibrate_model(out, tmp_path / "none", crop_uniform_border=None)["preprocessing"]
