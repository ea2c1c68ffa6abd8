import json
import shutil

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from osteolens.cli import app
from osteolens.errors import OsteolensError
from osteolens.inference.analyze import analyze
from osteolens.models.ensemble import ensemble_models
from osteolens.models.quantize import quantize_model
from osteolens.models.recalibrate import COMPARED, predict_onnx
from osteolens.models.registry import load_model
from osteolens.reporting.model_card import write_model_card
from osteolens.training.cache import load_cached
from tests.models.conftest import PP


@pytest.fixture(scope="module")
def second_member(tiny_config, tmp_path_factory):
    """The tiny recipe again with another seed: a second real network on the same split."""
    from osteolens.models.export import export_run
    from osteolens.training.trainer import train

    run = tmp_path_factory.mktemp("run_seed1")
    train(tiny_config.model_copy(update={"seed": 1}), run, show_progress=False)
    folder = tmp_path_factory.mktemp("model_seed1") / "tiny-seed1"
    export_run(run, folder, check_images=3)
    return folder


@pytest.fixture(scope="module")
def tiny_ensemble(tiny_source, second_member, tmp_path_factory):
    out = tmp_path_factory.mktemp("ens") / "tiny-ensemble"
    return out, ensemble_models([tiny_source, second_member], out, version="2.0.0")


def test_the_ensemble_outputs_the_members_mean_and_is_calibrated_on_their_validation_split(
        tiny_ensemble, tiny_source, second_member, tiny_dataset):
    out, meta = tiny_ensemble
    ens = meta["ensemble"]
    assert meta["name"] == "tiny-test-model-ensemble" and meta["version"] == "2.0.0"
    assert [m["sha256"] for m in ens["members"]] == [json.loads((f / "metadata.json").read_text())["sha256"]
                                                      for f in (tiny_source, second_member)]
    assert ens["check"]["n_images"] == 8 and max(ens["check"]["max_rel_diff"].values()) <= 1e-4
    assert "export_check" not in meta and meta["calibration"]["mask_postprocess"] == PP  # kept from the first member
    assert len(meta["changes"]) == 1 and meta["changes"][0].startswith("2.0.0: tiny-test-model-ensemble, the mean of")
    # the two networks differ, and the ensemble's flip-TTA logits are their mean, on real images
    data = load_cached(tiny_dataset / "manifest.csv", 64, tiny_dataset / "cache")
    preds = [predict_onnx(load_model(f), data.images[:6], data.clinical[:6]) for f in (tiny_source, second_member, out)]
    assert np.abs(preds[0]["class_logits"] - preds[1]["class_logits"]).max() > 1e-3
    for key in ("class_logits", "subtype_logits", "cam"):
        np.testing.assert_allclose(preds[2][key], (preds[0][key] + preds[1][key]) / 2, atol=1e-4)
    # each member's validation figures are its own calibration's, recomputed from its ONNX outputs
    figures = ens["validation"]["figures"]
    assert set(figures) == set(COMPARED) and ens["validation"]["n_images"] == 15
    for k, folder in enumerate((tiny_source, second_member)):
        own = json.loads((folder / "metadata.json").read_text())["calibration"]
        assert figures["val_macro_auc"]["members"][k] == pytest.approx(own["val_macro_auc"], abs=1e-3)
    assert figures["val_macro_auc"]["ensemble"] == pytest.approx(meta["calibration"]["val_macro_auc"], abs=1e-4)
    assert meta["calibration"]["temperature"] > 0 and meta["calibration"]["referral_rate"] == 0.1


def test_analysis_with_the_ensemble_reports_the_calibrated_mean_of_its_members(
        tiny_ensemble, tiny_source, second_member, btxrd_dir, tmp_path):
    """The ensemble's log-odds times its temperature are the mean of the members' log-odds times theirs."""
    out, meta = tiny_ensemble
    images = sorted((btxrd_dir / "images").glob("*.png"))[:3]
    runs = {}
    for k, folder in enumerate((tiny_source, second_member, out)):
        results = analyze(images, tmp_path / str(k), model=folder)
        assert [r.status for r in results] == ["ok"] * 3
        temperature = json.loads((folder / "metadata.json").read_text())["calibration"]["temperature"]
        p = np.array([[r.p_normal, r.p_benign, r.p_malignant] for r in results])
        runs[k] = temperature * (np.log(p[:, 1:]) - np.log(p[:, :1]))  # logits relative to normal's
    np.testing.assert_allclose(runs[2], (runs[0] + runs[1]) / 2, atol=1e-3)
    assert np.abs(runs[0] - runs[1]).max() > 1e-2


def test_the_ensemble_quantizes_with_its_early_layers_kept_in_float32(tiny_ensemble, tmp_path):
    out, _ = tiny_ensemble
    meta = quantize_model(out, tmp_path / "int8", n_calibration=8, max_auc_drop=1.0, max_dice_drop=1.0)
    assert meta["name"] == "tiny-test-model-ensemble-int8" and len(meta["ensemble"]["members"]) == 2
    graph = onnx.load(str(tmp_path / "int8" / "model.onnx")).graph
    produced_by = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    def int8_weight(conv):
        return produced_by.get(conv.input[1]) is not None and produced_by[conv.input[1]].op_type == "DequantizeLinear"
    for member in ("m0_", "m1_"):
        stem = [c for c in convs if c.name.startswith(member) and "/encoder/stem" in c.name]
        late = [c for c in convs if c.name.startswith(member) and "/encoder/blocks.10/" in c.name]
        assert stem and not any(int8_weight(c) for c in stem)
        assert late and all(int8_weight(c) for c in late)


def test_the_ensembles_card_names_its_members_and_their_validation_figures(tiny_ensemble, tmp_path):
    out, meta = tiny_ensemble
    card = tmp_path / "card"
    shutil.copytree(out, card)
    acc = {"model": meta["name"], "tag": "holdout", "n_cases": 15, "n_groups": 15, "splits_file": "splits.csv", "split": "val",
           "table": [], "metrics": {}}
    (tmp_path / "acc.json").write_text(json.dumps(acc))
    text = write_model_card(card, [tmp_path / "acc.json"]).read_text()
    assert "An ensemble of 2 networks: tiny-test-model" in text and "members -> ensemble: macro auc" in text
    assert "raw outputs equal the mean of its members'" in text and "Every member was trained on these images" in text


def test_members_that_cannot_be_averaged_are_refused(tiny_source, second_member, tmp_path):
    with pytest.raises(OsteolensError, match="two or more"):
        ensemble_models([tiny_source], tmp_path / "one")
    with pytest.raises(OsteolensError, match="the same network as"):
        ensemble_models([tiny_source, second_member, tiny_source], tmp_path / "twice")
    with pytest.raises(OsteolensError, match="a member's own folder"):
        ensemble_models([tiny_source, second_member], second_member)
    for field, value, message in (("splits_sha256", "0" * 64, "another split file"), ("image_size", 96, "image_size"),
                                  ("quantization", {}, "int8 copy")):
        odd = tmp_path / field
        shutil.copytree(second_member, odd)
        meta = json.loads((odd / "metadata.json").read_text())
        where = {"splits_sha256": meta["training"], "image_size": meta["preprocessing"]}.get(field, meta)
        where[field] = value
        (odd / "metadata.json").write_text(json.dumps(meta))
        with pytest.raises(OsteolensError, match=message):
            ensemble_models([tiny_source, odd], tmp_path / f"ens_{field}")


def test_the_cli_writes_an_ensemble(tiny_source, second_member, tmp_path):
    r = CliRunner().invoke(app, ["ensemble", str(tiny_source), str(second_member), "--out", str(tmp_path / "e"),
                                 "--name", "pair"])
    assert r.exit_code == 0, r.output
    assert "members -> ensemble: val_macro_auc" in r.output
    assert json.loads((tmp_path / "e" / "metadata.json").read_text())["name"] == "pair"
