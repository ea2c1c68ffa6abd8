import json

import pytest

from osteolens import RESEARCH_NOTICE
from osteolens.reporting.model_card import write_model_card


def test_model_card_states_the_model_its_calibration_and_limits(tiny_model, tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    meta = json.loads((folder / "metadata.json").read_text())
    card = write_model_card(folder, accuracy=[], notes=["trained for one epoch in a test"]).read_text()
    assert card.startswith(f"# Model card: tiny-test-model {meta['version']}")
    assert RESEARCH_NOTICE in card and meta["sha256"] in card
    assert "Input 64 x 64 grey" in card and "mask read at 64 px" in card
    assert f"malignant threshold {meta['calibration']['malignant_threshold']:.4f}" in card
    assert "CC BY-NC-ND 4.0" in card and "- trained for one epoch in a test" in card


def test_model_card_says_which_mask_components_post_processing_drops(tiny_model, tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["calibration"]["val_mask_postprocess"] = {"dice_mean_tumour": 0.44, "ap50": 0.28}
    for pp, words in (({"min_fraction": 0.1, "min_component": 0.001}, "components under 10% of the largest or under 0.10% "
                       "of the image dropped"),
                      ({"min_fraction": 0.0, "min_component": 0.0}, "every component kept, however small")):
        meta["calibration"]["mask_postprocess"] = {"threshold": 0.4, "closing": 0.01, "fill_holes": False, **pp}
        (folder / "metadata.json").write_text(json.dumps(meta))
        card = write_model_card(folder, accuracy=[]).read_text()
        assert f"closing 1% of the shorter side, {words}; boxes scored" in card


def test_model_card_gives_one_latency_table_per_machine(tiny_model, tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    rows = {"network alone, batch 1": {"median_ms": 29.3, "p95_ms": 37.0}}
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"threads": 2, "rows": rows}))
    new = tmp_path / "new.json"
    new.write_text(json.dumps({"threads": 2, "cpu": {"name": "AMD EPYC", "capability": "AVX2"}, "rows": rows}))
    card = write_model_card(folder, accuracy=[], latency=[old, new]).read_text()
    assert "### Latency (2 CPU threads; CPU not recorded)" in card
    assert "### Latency (2 CPU threads; AMD EPYC, AVX2)" in card
    assert card.count("| network alone, batch 1 | 29.3 | 37.0 |") == 2


def _ci(v):
    return {"value": v, "ci_low": v - 0.05, "ci_high": v + 0.05}


def _card_with_metrics(tiny_model, tmp_path, metrics: dict) -> str:
    """The card of a copy of the tiny model given one accuracy record of the shipped model's form."""
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder, dirs_exist_ok=True)
    meta = json.loads((folder / "metadata.json").read_text())
    acc = {"model": meta["name"], "tag": "holdout", "n_cases": 10, "n_groups": 5, "splits_file": "s.csv", "split": "test",
           "table": [], "metrics": metrics}
    (tmp_path / "acc.json").write_text(json.dumps(acc))
    return write_model_card(folder, accuracy=[tmp_path / "acc.json"]).read_text()


def test_model_card_shows_how_detection_and_dice_fall_with_lesion_size(tiny_model, tmp_path):
    card = _card_with_metrics(tiny_model, tmp_path, {"strata": {"lesion_size": [
        {"stratum": "small (<2% of image)", "n": 6, "tumour_sensitivity": _ci(0.77), "dice_mean_tumour": _ci(0.37),
         "long_axis_within_20pct_tumour": _ci(0.25)},
        {"stratum": "large (>=8%)", "n": 4, "tumour_sensitivity": _ci(1.0), "dice_mean_tumour": None}]}})
    assert "| small (<2% of image) | 6 | 0.770 (0.720-0.820) | 0.370 (0.320-0.420) | 0.250 (0.200-0.300) |" in card
    assert "| large (>=8%) | 4 | 1.000 (0.950-1.050) | n/a | n/a |" in card
    # a record from before the size was measured gets no size column
    card = _card_with_metrics(tiny_model, tmp_path, {"strata": {"lesion_size": [
        {"stratum": "small (<2% of image)", "n": 6, "tumour_sensitivity": _ci(0.77), "dice_mean_tumour": _ci(0.37)}]}})
    assert "| small (<2% of image) | 6 | 0.770 (0.720-0.820) | 0.370 (0.320-0.420) |\n" in card
    assert "long axis within 20%" not in card


def test_model_card_shows_each_subtype_against_always_answering_the_commonest(tiny_model, tmp_path):
    classification = {"subtype_most_common": {"subtype": "osteochondroma", "share": _ci(0.42)}}
    card = _card_with_metrics(tiny_model, tmp_path, {"classification": classification, "strata": {"subtype": [
        {"stratum": "giant cell tumor", "n": 6, "tumour_sensitivity": _ci(0.9), "subtype_recall": _ci(0.08),
         "dice_mean_tumour": _ci(0.5)},
        {"stratum": "osteochondroma", "n": 4, "tumour_sensitivity": _ci(0.7), "subtype_recall": None, "dice_mean_tumour": None}]}})
    assert "answering osteochondroma for every tumour would be right in 0.420 (0.370-0.470)" in card
    assert "| giant cell tumor | 6 | 0.900 (0.850-0.950) | 0.080 (0.030-0.130) | 0.500 (0.450-0.550) |" in card
    assert "| osteochondroma | 4 | 0.700 (0.650-0.750) | n/a | n/a |" in card
    # an older record, whose subtype strata carry no recall, gets no subtype table
    card = _card_with_metrics(tiny_model, tmp_path, {"classification": classification, "strata": {"subtype": [
        {"stratum": "giant cell tumor", "n": 6, "tumour_sensitivity": _ci(0.9)}]}})
    assert "By subtype" not in card


def test_model_card_shows_robustness_against_the_control_and_whose_figures_they_are(tiny_model, tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    meta = json.loads((folder / "metadata.json").read_text())
    paired = {"malignant": {"difference": -0.059, "ci_low": -0.099, "ci_high": -0.017},
              "tumour_vs_normal": {"difference": -0.108, "ci_low": -0.139, "ci_high": -0.080}}
    figures = {k: _ci(v) for k, v in (("macro_auc", 0.83), ("auc_tumour_vs_normal", 0.833), ("auc_malignant", 0.876),
                                      ("dice_mean_tumour", 0.258))}
    rob = {"model": "osteolens-radiograph", "model_version": "1.5.1", "model_sha256": meta["sha256"], "split": "test",
           "n_cases": 633, "variants": [
               {"variant": "control", "description": "8-bit PNG", "decision_changed": 0.0, "figures": figures,
                "paired_vs_control": {}},
               {"variant": "noise_0.03", "description": "Gaussian noise", "decision_changed": 0.404, "figures": figures,
                "paired_vs_control": paired}]}
    (tmp_path / "rob.json").write_text(json.dumps(rob))
    card = write_model_card(folder, accuracy=[], robustness=tmp_path / "rob.json").read_text()
    assert "### Robustness: the test-split images (633) stored, resampled or processed differently (this model)" in card
    assert ("| Gaussian noise | 0.830 (0.780-0.880) | 0.833 (0.783-0.883) | -0.108 (-0.139 to -0.080) | 0.876 (0.826-0.926) "
            "| -0.059 (-0.099 to -0.017) | 0.258 (0.208-0.308) | 40.4% |") in card
    assert "| 8-bit PNG | 0.830 (0.780-0.880) | 0.833 (0.783-0.883) |  | 0.876 (0.826-0.926) |  |" in card
    rob["model_sha256"] = "0" * 64  # another model's record says so
    (tmp_path / "rob.json").write_text(json.dumps(rob))
    card = write_model_card(folder, accuracy=[], robustness=tmp_path / "rob.json").read_text()
    assert "(osteolens-radiograph 1.5.1, not this copy)" in card


def test_lesion_erasure_rows_get_their_own_table_beside_the_control(tiny_model, tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    meta = json.loads((folder / "metadata.json").read_text())

    def row(variant, description, tumour, dice, called=None):
        figures = {"macro_auc": _ci(0.9), "auc_tumour_vs_normal": _ci(tumour), "auc_malignant": _ci(0.93),
                   "dice_mean_tumour": _ci(dice)}
        if called is not None:
            figures.update(tumour_called_normal=called, mean_p_tumour_tumour_images=0.735)
        paired = {} if variant == "control" else {
            "tumour_vs_normal": {"difference": tumour - 0.941, "ci_low": -0.016, "ci_high": 0.010}}
        return {"variant": variant, "description": description, "decision_changed": 0.1, "figures": figures,
                "paired_vs_control": paired}

    rob = {"model": "osteolens-radiograph", "model_version": "1.6.0", "model_sha256": meta["sha256"], "split": "test",
           "n_cases": 633, "variants": [row("control", "8-bit PNG", 0.941, 0.489, 0.146),
                                        row("lesion_erased_wide", "lesion (+15 px) filled", 0.938, 0.023, 0.175),
                                        row("blur_1px", "Gaussian blur", 0.893, 0.424)]}
    (tmp_path / "rob.json").write_text(json.dumps(rob))
    card = write_model_card(folder, accuracy=[], robustness=tmp_path / "rob.json").read_text()
    robustness, erasure = card.split("### What the calls rest on: the true lesion erased (the test-split images, 633)")
    assert "| Gaussian blur |" in robustness and "filled" not in robustness.split("### Robustness")[1]
    assert "| lesion (+15 px) filled | 0.938 (0.888-0.988) | -0.003 (-0.016 to +0.010) |" in erasure
    assert "| 0.023 (-0.027-0.073) | 17.5% | 0.735 |" in erasure and "| 8-bit PNG | 0.941" in erasure
    assert "Gaussian blur" not in erasure.split("## Limitations")[0]


def test_robustness_runs_of_one_model_share_a_table_and_others_are_refused():
    from osteolens.reporting.model_card import merge_robustness

    def run(*names, sha="a" * 64):
        return {"model": "m", "model_version": "1", "model_sha256": sha, "split": "test", "n_cases": 633,
                "variants": [{"variant": n} for n in names]}

    merged = merge_robustness([run("control", "jpeg_q75"), run("control", "black_frame", "dicom_padded")])
    assert [v["variant"] for v in merged["variants"]] == ["control", "jpeg_q75", "black_frame", "dicom_padded"]
    with pytest.raises(ValueError, match="different models"):
        merge_robustness([run("control"), run("control", sha="b" * 64)])


def test_model_card_shows_a_study_reading_against_each_image_alone(tiny_model, tmp_path):
    import shutil
    from pathlib import Path

    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    meta = json.loads((folder / "metadata.json").read_text())
    measured = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "radiograph_studies_holdout_v160.json"
    record = json.loads(measured.read_text())
    card = write_model_card(folder, accuracy=[], studies=[measured]).read_text()
    assert ("### Reading a study's views together: the test-split images (633) in 338 studies of at most 3 images "
            "(osteolens-radiograph 1.6.0, not this copy)") in card
    d = record["per_image_difference"]["macro_auc"]
    own, joint = record["per_image_own"]["macro_auc"], record["per_image_study_reading"]["macro_auc"]
    assert (f"| macro AUC | {own['value']:.3f} ({own['ci_low']:.3f}-{own['ci_high']:.3f}) | {joint['value']:.3f} "
            f"({joint['ci_low']:.3f}-{joint['ci_high']:.3f}) | {d['value']:+.3f} ({d['ci_low']:+.3f} to "
            f"{d['ci_high']:+.3f}) |") in card
    record["model_sha256"] = meta["sha256"]
    (tmp_path / "studies.json").write_text(json.dumps(record))
    assert "338 studies of at most 3 images (this model)" in write_model_card(
        folder, accuracy=[], studies=[tmp_path / "studies.json"]).read_text()
