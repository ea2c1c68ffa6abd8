import json

import numpy as np
import onnx
import pytest

from osteolens.errors import OsteolensError
from osteolens.inference.analyze import analyze
from osteolens.models.quantize import COMPARED, predict_onnx, quantize_model
from osteolens.models.registry import load_model
from osteolens.reporting.model_card import write_model_card
from osteolens.training.cache import load_cached
from tests.models.conftest import PP


@pytest.fixture(scope="module")
def tiny_int8(tiny_source, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "tiny-int8"
    # a model trained for one step moves by chance on 15 validation images: no accuracy gate here
    meta = quantize_model(tiny_source, out, n_calibration=8, max_auc_drop=1.0, max_dice_drop=1.0)
    return out, meta


def test_int8_copy_is_quantized_except_the_early_layers(tiny_int8):
    out, meta = tiny_int8
    graph = onnx.load(str(out / "model.onnx")).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") > 20 and ops.count("DequantizeLinear") > 20
    convs = {n.name: n for n in graph.node if n.op_type == "Conv"}
    produced_by = {o: n for n in graph.node for o in n.output}
    def weight_is_int8(conv):
        return produced_by.get(conv.input[1]) is not None and produced_by[conv.input[1]].op_type == "DequantizeLinear"
    stem = [c for name, c in convs.items() if "/encoder/stem" in name]
    late = [c for name, c in convs.items() if "/encoder/blocks.10/" in name]
    assert stem and not any(weight_is_int8(c) for c in stem)  # kept in float32
    assert late and all(weight_is_int8(c) for c in late)
    q = meta["quantization"]
    assert meta["name"] == "tiny-test-model-int8" and q["calibration_images"] == {"split": "train", "n": 8, "seed": 0, "flip_tta": True}
    assert set(q["validation"]["figures"]) == set(COMPARED) and q["validation"]["n_images"] == 15
    assert "export_check" not in meta and meta["changes"][-1].startswith(f"{meta['version']} int8")


def test_int8_copy_is_recalibrated_and_close_to_its_source(tiny_int8, tiny_source, tiny_dataset):
    out, meta = tiny_int8
    source = json.loads((tiny_source / "metadata.json").read_text())
    cal = meta["calibration"]
    assert cal["temperature"] > 0 and 0 <= cal["malignant_threshold"] <= 1 and cal["referral_rate"] == 0.1
    assert cal["mask_postprocess"] == PP and "val_mask_postprocess" not in cal  # kept; its figures were the source's
    figures = meta["quantization"]["validation"]["figures"]
    for k, v in figures.items():
        assert v["change"] == pytest.approx(v["int8"] - v["float32"], abs=2e-4), k
    # the float32 figures are the source's own calibration, recomputed from its ONNX outputs
    assert figures["val_macro_auc"]["float32"] == pytest.approx(source["calibration"]["val_macro_auc"], abs=1e-3)
    data = load_cached(tiny_dataset / "manifest.csv", 64, tiny_dataset / "cache")
    a = predict_onnx(load_model(tiny_source), data.images[:6], data.clinical[:6])
    b = predict_onnx(load_model(out), data.images[:6], data.clinical[:6])
    assert a["mask_prob"].shape == b["mask_prob"].shape == (6, 64, 64)
    assert 0 < np.abs(a["class_logits"] - b["class_logits"]).max() < 0.5
    assert np.abs(a["mask_prob"] - b["mask_prob"]).mean() < 0.05


def test_int8_copy_runs_the_analysis_and_its_card_says_what_it_is(tiny_int8, tiny_dataset, tmp_path):
    out, meta = tiny_int8
    import pandas as pd

    images = list(pd.read_csv(tiny_dataset / "manifest.csv")["image"].iloc[[0, -1]])
    results = analyze(images, tmp_path / "analysis", model=out, report=False, keep_arrays=True)
    assert all(r.status == "ok" for r in results)
    written = json.loads(next((tmp_path / "analysis").glob("*.json")).read_text())
    assert written["model"] == {"name": "tiny-test-model-int8", "version": meta["version"], "sha256": meta["sha256"]}
    card = write_model_card(out, []).read_text()
    assert "ONNX int8" in card and "kept in float32: /encoder/blocks.0/" in card
    assert "Mask post-processing (kept from the source model, not re-scored on this one): closing 1%" in card


def test_quantize_refuses_other_splits_a_quantized_source_and_a_large_loss(tiny_model, tiny_int8, tiny_dataset, tmp_path):
    other = tmp_path / "splits.csv"
    text = (tiny_dataset / "splits.csv").read_text().splitlines()
    other.write_text("\n".join(text[:1] + text[2:] + text[1:2]) + "\n")  # same rows, another file
    with pytest.raises(OsteolensError, match="not the split file"):
        quantize_model(tiny_model, tmp_path / "a", splits=other, n_calibration=4)
    with pytest.raises(OsteolensError, match="already quantized"):
        quantize_model(tiny_int8[0], tmp_path / "b", n_calibration=4)
    with pytest.raises(OsteolensError, match="refused: on 15 validation images it loses"):
        quantize_model(tiny_model, tmp_path / "c", n_calibration=4, max_auc_drop=-1.0, max_dice_drop=-1.0)
    assert not (tmp_path / "c").exists()
    shared = tmp_path / "shared"  # a refused copy removes only what it wrote
    shared.mkdir()
    (shared / "notes.txt").write_text("mine")
    with pytest.raises(OsteolensError, match="refused"):
        quantize_model(tiny_model, shared, n_calibration=4, max_auc_drop=-1.0, max_dice_drop=-1.0)
    assert sorted(f.name for f in shared.iterdir()) == ["notes.txt"]


def test_shipped_int8_model_is_a_copy_of_the_shipped_default_and_agrees_with_it(btxrd_dir):
    """If the default model is replaced, its int8 copy must be made again (the source sha256 ties them)."""
    from osteolens.inference.analyze import analyze_image
    from osteolens.io.images import read_image

    fp32, int8 = load_model("osteolens-radiograph", threads=1), load_model("osteolens-radiograph-int8", threads=1)
    assert int8.metadata["quantization"]["source_model"]["sha256"] == fp32.metadata["sha256"]
    assert int8.metadata["preprocessing"]["crop_uniform_border"] == fp32.metadata["preprocessing"]["crop_uniform_border"]
    assert (int8.folder / "model.onnx").stat().st_size < 0.35 * (fp32.folder / "model.onnx").stat().st_size
    assert (int8.folder / "MODEL_CARD.md").is_file()
    clinical = {"age": 52, "sex": "M", "region": "lower limb", "view": "frontal"}
    for name in ("IMG000004.png", "IMG000010.png", "IMG001500.png", "IMG003000.png"):
        arr, props = read_image(btxrd_dir / "images" / name)
        a, b = analyze_image(fp32, arr, props, clinical), analyze_image(int8, arr, props, clinical)
        assert a.label == b.label and abs(a.p_malignant - b.p_malignant) < 0.05 and abs(a.p_normal - b.p_normal) < 0.05, name
        both = a.mask | b.mask
        if both.sum() > 50:
            assert 2 * (a.mask & b.mask).sum() / (a.mask.sum() + b.mask.sum()) > 0.8, name
