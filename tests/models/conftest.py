"""Fixtures shared by the model tests."""

import json
import shutil

import pytest

PP = {"threshold": 0.3, "closing": 0.01, "min_fraction": 0.0, "fill_holes": False, "min_component": 0.0}


@pytest.fixture(scope="session")
def tiny_source(tiny_model, tmp_path_factory):
    """The tiny model with mask post-processing recorded, as a shipped model has."""
    folder = tmp_path_factory.mktemp("source") / "tiny"
    shutil.copytree(tiny_model, folder)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["calibration"].update(mask_postprocess=PP, val_mask_postprocess={"dice_mean_tumour": 0.5, "ap50": 0.3})
    (folder / "metadata.json").write_text(json.dumps(meta))
    return folder
