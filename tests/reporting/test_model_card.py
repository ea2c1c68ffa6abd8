import json

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


def test_model_card_shows_how_detection_and_dice_fall_with_lesion_size(tiny_model, tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    meta = json.loads((folder / "metadata.json").read_text())

    def ci(v):
        return {"value": v, "ci_low": v - 0.05, "ci_high": v + 0.05}

    acc = {"model": meta["name"], "tag": "holdout", "n_cases": 10, "n_groups": 5, "splits_file": "s.csv", "split": "test",
           "table": [], "metrics": {"strata": {"lesion_size": [
               {"stratum": "small (<2% of image)", "n": 6, "tumour_sensitivity": ci(0.77), "dice_mean_tumour": ci(0.37)},
               {"stratum": "large (>=8%)", "n": 4, "tumour_sensitivity": ci(1.0), "dice_mean_tumour": None}]}}}
    (tmp_path / "acc.json").write_text(json.dumps(acc))
    card = write_model_card(folder, accuracy=[tmp_path / "acc.json"]).read_text()
    assert "| small (<2% of image) | 6 | 0.770 (0.720-0.820) | 0.370 (0.320-0.420) |" in card
    assert "| large (>=8%) | 4 | 1.000 (0.950-1.050) | n/a |" in card
