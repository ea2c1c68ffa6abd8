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
