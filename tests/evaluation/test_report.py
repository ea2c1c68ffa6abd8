import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from osteolens.cli import app
from osteolens.data.manifest import load_manifest
from osteolens.errors import EvaluationError
from osteolens.evaluation.report import evaluate


@pytest.fixture(scope="module")
def subset(btxrd_manifest, tmp_path_factory):
    """400 real BTXRD cases with predictions: exact masks, noisy probabilities."""
    out = tmp_path_factory.mktemp("eval")
    f = load_manifest(btxrd_manifest).to_frame().iloc[:400]
    rng = np.random.default_rng(0)
    y = f["label"].map({"normal": 0, "benign": 1, "malignant": 2}).to_numpy()
    logits = rng.normal(size=(len(f), 3))
    logits[np.arange(len(f)), y] += 2
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    masks = [str((btxrd_manifest.parent / m).resolve()) for m in f["mask"]]
    pred = pd.DataFrame({"image": f["case_id"] + ".png", "status": "ok", "p_normal": p[:, 0], "p_benign": p[:, 1],
                         "p_malignant": p[:, 2], "mask": masks})
    pred.loc[len(pred)] = {"image": "broken.png", "status": "error"}
    pred.to_csv(out / "pred.csv", index=False)
    return out, f, p, y


def test_evaluate_writes_real_values(subset, btxrd_manifest):
    out, f, p, y = subset
    m = evaluate(out / "pred.csv", btxrd_manifest, out / "res", n_boot=300, seed=0)
    on_disk = json.loads((out / "res" / "metrics.json").read_text())
    assert on_disk["n_cases"] == 400 and on_disk["n_prediction_errors"] == 1
    assert on_disk["n_predictions_without_truth"] == 0
    auc = on_disk["classification"]["auc"]["malignant"]
    assert auc["value"] == pytest.approx(roc_auc_score(y == 2, p[:, 2]), abs=1e-6)
    assert auc["ci_low"] < auc["value"] < auc["ci_high"] and auc["n"] == 400
    acc = on_disk["classification"]["accuracy"]["value"]
    assert acc == pytest.approx((p.argmax(1) == y).mean(), abs=1e-6)
    # predicted masks are the truth masks: perfect segmentation and detection
    s = on_disk["segmentation"]
    assert s["dice_mean_tumour"]["value"] == 1.0 and s["hd95_mean_tumour_px"]["value"] == 0.0
    assert s["long_axis_within_20pct_tumour"]["value"] == 1.0 and s["long_axis_ratio_geomean_found"]["value"] == pytest.approx(1.0)
    assert s["dice_mean_tumour"]["n"] == int((y > 0).sum())
    assert on_disk["detection"]["ap50"]["value"] == pytest.approx(1.0, abs=0.05)
    assert {"centre", "subtype", "sex", "age_band", "lesion_size", "site"} <= set(on_disk["strata"])
    for name in ("summary.md", "roc.png", "reliability.png", "confusion.png", "per_case.csv"):
        assert (out / "res" / name).is_file()
    assert "research use only" in (out / "res" / "summary.md").read_text()
    assert m["classification"]["macro_auc"]["value"] == on_disk["classification"]["macro_auc"]["value"]


def test_predictions_saved_with_decimal_commas_give_the_same_figures(subset, btxrd_manifest, tmp_path):
    """A predictions table opened and saved by a spreadsheet where the decimal mark is a comma has semicolons
    between cells and commas in its numbers; its probabilities were refused as non-numeric."""
    out, f, p, y = subset
    table = pd.read_csv(out / "pred.csv", dtype=str, keep_default_na=False).drop(columns="mask")
    table.to_csv(tmp_path / "point.csv", index=False)
    for c in ("p_normal", "p_benign", "p_malignant"):
        table[c] = table[c].str.replace(".", ",", regex=False)
    table.to_csv(tmp_path / "comma.csv", index=False, sep=";")
    assert "0," in (tmp_path / "comma.csv").read_text()
    point = evaluate(tmp_path / "point.csv", btxrd_manifest, tmp_path / "a", n_boot=50, seed=0)
    comma = evaluate(tmp_path / "comma.csv", btxrd_manifest, tmp_path / "b", n_boot=50, seed=0)
    assert comma["classification"]["auc"] == point["classification"]["auc"]
    assert comma["classification"]["auc"]["malignant"]["value"] == pytest.approx(roc_auc_score(y == 2, p[:, 2]), abs=1e-6)


def test_probabilities_must_sum_to_one(tmp_path, btxrd_manifest):
    pd.DataFrame({"case_id": ["IMG000001"], "p_normal": [0.5], "p_benign": [0.5], "p_malignant": [0.5]}).to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(EvaluationError, match="IMG000001.*sum to 1.5"):
        evaluate(tmp_path / "p.csv", btxrd_manifest, tmp_path / "out")


def test_cli_evaluate_and_compare(subset, btxrd_manifest, tmp_path):
    out, f, p, y = subset
    runner = CliRunner()
    r = runner.invoke(app, ["evaluate", str(out / "pred.csv"), "--truth", str(btxrd_manifest), "--out", str(tmp_path / "e"), "--n-boot", "100"])
    assert r.exit_code == 0, r.output
    assert "macro AUC" in r.output
    flat = pd.DataFrame({"case_id": f["case_id"], "p_normal": 1 / 3, "p_benign": 1 / 3, "p_malignant": 1 / 3})
    flat.to_csv(tmp_path / "flat.csv", index=False)
    r = runner.invoke(app, ["compare", str(out / "pred.csv"), str(tmp_path / "flat.csv"), "--truth", str(btxrd_manifest)])
    assert r.exit_code == 0, r.output
    assert "malignant on 400 cases" in r.output and "AUC A" in r.output and "B 0.5000" in r.output
    assert "paired group bootstrap" in r.output


def test_paired_bootstrap_keeps_patient_groups(subset, btxrd_manifest, tmp_path):
    from osteolens.evaluation.bootstrap import group_bootstrap_weights
    from osteolens.evaluation.compare import compare_models

    out, f, p, y = subset
    flat = pd.DataFrame({"case_id": f["case_id"], "p_normal": 1 / 3, "p_benign": 1 / 3, "p_malignant": 1 / 3})
    flat.to_csv(tmp_path / "flat.csv", index=False)
    r = compare_models(out / "pred.csv", tmp_path / "flat.csv", btxrd_manifest, "malignant", n_boot=500, seed=3)
    auc = roc_auc_score(y == 2, p[:, 2])
    assert r["n"] == 400 and r["n_groups"] == f["group_id"].nunique() < 400
    assert r["difference"] == pytest.approx(auc - 0.5, abs=1e-9)
    # the interval is the percentile interval of sklearn's AUC over the same group resamples
    W = group_bootstrap_weights(f["group_id"].to_numpy(), 500, 3)
    boots = [roc_auc_score(y == 2, p[:, 2], sample_weight=w) - 0.5 for w in W]
    b = r["bootstrap"]
    assert b["ci_low"] == pytest.approx(np.quantile(boots, 0.025), abs=1e-6)
    assert b["ci_high"] == pytest.approx(np.quantile(boots, 0.975), abs=1e-6)
    assert b["ci_low"] > 0 and b["p_value"] == 0.0  # a real model against a constant: every resample favours it


def test_macro_auc_compared_by_the_paired_bootstrap_alone(subset, btxrd_manifest, tmp_path):
    """``task="macro"``: the mean one-vs-rest AUC of each model over the same group resamples; no DeLong."""
    from osteolens.evaluation.bootstrap import group_bootstrap_weights
    from osteolens.evaluation.compare import compare_models

    out, f, p, y = subset
    shuffled = pd.DataFrame({"case_id": f["case_id"], "p_normal": p[::-1, 0], "p_benign": p[::-1, 1],
                             "p_malignant": p[::-1, 2]})  # another model: the same probabilities on the wrong cases
    shuffled.to_csv(tmp_path / "shuffled.csv", index=False)
    r = compare_models(out / "pred.csv", tmp_path / "shuffled.csv", btxrd_manifest, "macro", n_boot=300, seed=1)
    present = np.unique(y)  # these 400 cases hold no normal image: the mean runs over the classes present
    macro, macro_b = (np.mean([roc_auc_score(y == k, q[:, k]) for k in present]) for q in (p, p[::-1]))
    assert r["auc_a"] == pytest.approx(macro, abs=1e-9) and r["auc_b"] == pytest.approx(macro_b, abs=1e-9)
    assert r["difference"] == pytest.approx(macro - macro_b, abs=1e-9) and r["z"] is None and r["ci_low"] is None
    W = group_bootstrap_weights(f["group_id"].to_numpy(), 300, 1)
    boots = [np.mean([roc_auc_score(y == k, p[:, k], sample_weight=w) - roc_auc_score(y == k, p[::-1, k], sample_weight=w)
                      for k in present]) for w in W]
    assert r["bootstrap"]["ci_low"] == pytest.approx(np.quantile(boots, 0.025), abs=1e-6)
    assert r["bootstrap"]["ci_high"] == pytest.approx(np.quantile(boots, 0.975), abs=1e-6)
    result = CliRunner().invoke(app, ["compare", str(out / "pred.csv"), str(tmp_path / "shuffled.csv"), "--truth",
                                      str(btxrd_manifest), "--task", "macro", "--n-boot", "100"])
    assert result.exit_code == 0, result.output
    assert "macro on 400 cases" in result.output and "DeLong" not in result.output and "paired group bootstrap" in result.output
    with pytest.raises(EvaluationError, match="unknown task 'micro'.*macro"):
        compare_models(out / "pred.csv", tmp_path / "shuffled.csv", btxrd_manifest, "micro")


def test_hd95_in_mm_for_dicom_with_spacing(tmp_path, btxrd_dir):
    from PIL import Image

    from tests.io.test_dicom import make_dicom

    cases = {}
    for name in ("IMG000001", "IMG000004"):
        pixels = np.asarray(Image.open(btxrd_dir / "images" / f"{name}.png")).astype(np.uint16)
        make_dicom(tmp_path / f"{name}.dcm", pixels, PixelSpacing=[0.5, 0.5])
        truth = np.zeros((256, 256), np.uint8)
        truth[100:140, 100:140] = 255
        cases[name] = (f"{name}.dcm", truth, np.roll(truth, 3, axis=0))
    s = _segmentation_of(tmp_path, cases)
    assert s["hd95_mean_tumour_px"]["value"] == pytest.approx(3.0)
    assert s["hd95_mean_tumour_mm"]["value"] == pytest.approx(1.5)
    assert s["dice_mean_tumour"]["value"] == pytest.approx(2 * 37 * 40 / 3200)


def _segmentation_of(tmp_path, cases):
    """``evaluate``'s segmentation metrics for tumour cases ``{name: (image file, true mask, predicted mask)}``."""
    from PIL import Image

    rows, preds = [], []
    for i, (name, (image, truth, pred)) in enumerate(cases.items()):
        Image.fromarray(truth).save(tmp_path / f"{name}_mask.png")
        Image.fromarray(pred).save(tmp_path / f"{name}_pred.png")
        rows.append({"case_id": name, "group_id": f"g{i}", "image": image, "mask": f"{name}_mask.png", "label": "malignant"})
        preds.append({"case_id": name, "p_normal": 0.1, "p_benign": 0.1, "p_malignant": 0.8, "mask": f"{name}_pred.png"})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    pd.DataFrame(preds).to_csv(tmp_path / "pred.csv", index=False)
    return evaluate(tmp_path / "pred.csv", tmp_path / "manifest.csv", tmp_path / "out", n_boot=50, plots=False,
                    stratify=False)["segmentation"]


def test_long_axis_agreement(tmp_path):
    """The largest lesion's long axis against the truth's: one found at its size, one 25% short, one missed."""
    from PIL import Image

    truth = np.zeros((128, 128), np.uint8)
    truth[40:81, 30:71] = 255  # 41 x 41 px: long axis 40 * sqrt(2)
    preds = {"same": truth, "short": np.zeros_like(truth), "missed": np.zeros_like(truth)}
    preds["short"][40:71, 30:61] = 255  # 31 x 31 px: 0.75 of the long axis
    preds["same"] = np.roll(truth, 5, axis=1)  # shifted: the size is right, the place is not
    for name in preds:
        Image.fromarray(truth).save(tmp_path / f"{name}.png")
    s = _segmentation_of(tmp_path, {name: (f"{name}.png", truth, pred) for name, pred in preds.items()})
    assert s["long_axis_within_20pct_tumour"]["value"] == pytest.approx(1 / 3) and s["long_axis_within_20pct_tumour"]["n"] == 3
    assert s["long_axis_ratio_geomean_found"]["value"] == pytest.approx(np.sqrt(0.75))  # the two found: 1 and 0.75
    assert s["long_axis_abs_rel_error_found"]["value"] == pytest.approx(0.125) and s["long_axis_abs_rel_error_found"]["n"] == 2


def test_subtype_metrics_on_real_cases(btxrd_manifest, tmp_path):
    """Subtype accuracy, balanced accuracy, confusion matrix and per-subtype recall, checked by hand."""
    f = load_manifest(btxrd_manifest).to_frame().iloc[:400]
    tumour = f["label"] != "normal"
    names = sorted(f.loc[tumour, "subtype"].unique())
    assert len(names) >= 3
    # right for every second tumour image; the others get the next subtype, or none (called normal)
    pred = []
    for k, (is_tumour, truth) in enumerate(zip(tumour, f["subtype"].fillna(""))):
        if not is_tumour:
            pred.append("")
        elif k % 2 == 0:
            pred.append(truth)
        else:
            pred.append(names[(names.index(truth) + 1) % len(names)] if k % 3 else "")
    p = np.where(tumour.to_numpy()[:, None], [0.1, 0.6, 0.3], [0.8, 0.1, 0.1])
    pd.DataFrame({"case_id": f["case_id"], "p_normal": p[:, 0], "p_benign": p[:, 1], "p_malignant": p[:, 2],
                  "subtype": pred}).to_csv(tmp_path / "p.csv", index=False)
    m = evaluate(tmp_path / "p.csv", btxrd_manifest, tmp_path / "out", n_boot=100, plots=False)
    c = m["classification"]
    truth, pred = f.loc[tumour, "subtype"].to_numpy(), np.array(pred)[tumour.to_numpy()]
    right = truth == pred
    assert c["subtype_accuracy"]["value"] == pytest.approx(right.mean(), abs=1e-6)
    recalls = {n: right[truth == n].mean() for n in names}
    assert c["subtype_balanced_accuracy"]["value"] == pytest.approx(np.mean(list(recalls.values())), abs=1e-6)
    common = c["subtype_most_common"]
    assert common["subtype"] == pd.Series(truth).value_counts().index[0]
    assert common["share"]["value"] == pytest.approx((truth == common["subtype"]).mean(), abs=1e-6)
    cm = c["subtype_confusion_matrix"]
    assert cm["rows"] == names and cm["columns"][-1] == "(no subtype)"
    matrix = np.array(cm["matrix"])
    assert matrix.sum() == tumour.sum() and matrix[:, -1].sum() == (pred == "").sum()
    assert np.trace(matrix[:, : len(names)]) == right.sum()
    by_subtype = {r["stratum"]: r for r in m["strata"]["subtype"]}
    for n in names:
        assert by_subtype[n]["subtype_recall"]["value"] == pytest.approx(recalls[n], abs=1e-6)
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "## By subtype (tumour images)" in summary and "subtype balanced accuracy" in summary


def test_predictions_without_a_truth_case_are_counted(subset, btxrd_manifest, tmp_path):
    """A prediction row whose image is not in the truth (a file from another data set, a renamed file) is not
    silently dropped: metrics.json and the summary count it."""
    out, f, p, y = subset
    pred = pd.read_csv(out / "pred.csv")
    pred.loc[0, "image"] = "not_in_btxrd.png"
    pred.to_csv(tmp_path / "pred.csv", index=False)
    evaluate(tmp_path / "pred.csv", btxrd_manifest, tmp_path / "res", n_boot=50, seed=0)
    on_disk = json.loads((tmp_path / "res" / "metrics.json").read_text())
    assert on_disk["n_cases"] == 399 and on_disk["n_predictions_without_truth"] == 1
    assert "predictions without a truth case (another data set, or outside the split): 1" in (
        tmp_path / "res" / "summary.md").read_text()


def test_a_binary_file_given_as_predictions_is_refused_by_name(btxrd_manifest, tmp_path):
    (tmp_path / "pred.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(EvaluationError, match=r"pred\.csv: not a readable CSV predictions \(UnicodeDecodeError"):
        evaluate(tmp_path / "pred.csv", btxrd_manifest, tmp_path / "res", n_boot=50)


def test_a_set_without_malignant_cases_reports_no_operating_point_for_it(subset, btxrd_manifest, tmp_path):
    """With no malignant case, 'sensitivity >= 0.9' has no threshold: the row says so instead of a threshold that
    flags every image, and the malignant AUC is n/a, while tumour vs normal is still measured."""
    out, f, p, y = subset
    pred = pd.read_csv(out / "pred.csv")
    pred = pred[pred["image"].isin(f.loc[y < 2, "case_id"] + ".png")]
    pred.to_csv(tmp_path / "pred.csv", index=False)
    m = evaluate(tmp_path / "pred.csv", btxrd_manifest, tmp_path / "res", n_boot=50, seed=0)
    at = m["classification"]["at_sensitivity"]
    assert at["malignant"]["threshold"] is None and at["malignant"]["specificity"] is None
    assert 0 < at["tumour_vs_normal"]["threshold"] < 1 and at["tumour_vs_normal"]["sensitivity"]["value"] >= 0.9
    assert m["classification"]["auc"]["malignant"]["value"] is None
    summary = (tmp_path / "res" / "summary.md").read_text()
    assert "| malignant | sensitivity >= 0.9 (threshold n/a: no positive case) | n/a | n/a | n/a | n/a | n/a |" in summary


@pytest.mark.parametrize("boxes, scores, message", [
    ("10 10 40 40;50 50 60 60", "0.9", r"case IMG000001: 2 boxes but 1 box_scores"),
    ("10 10 forty 40", "", r"case IMG000001: box '10 10 forty 40' is not numbers"),
    ("10 10 40 40", "high", r"case IMG000001: box score 'high' is not numbers"),
])
def test_boxes_and_their_scores_that_do_not_read_are_named(btxrd_manifest, tmp_path, boxes, scores, message):
    pd.DataFrame({"image": ["IMG000001.png"], "p_normal": [0.2], "p_benign": [0.3], "p_malignant": [0.5],
                  "boxes": [boxes], "box_scores": [scores]}).to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(EvaluationError, match=message):
        evaluate(tmp_path / "p.csv", btxrd_manifest, tmp_path / "out", n_boot=20)
