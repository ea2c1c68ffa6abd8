"""Attaching a refiner that reads the first look, and the analysis that hands it the first look."""

import numpy as np


def test_attach_checks_the_first_look_network_and_the_analysis_hands_it_the_first_look(
        tiny_first_look_refiner_run, tiny_model, tiny_source, btxrd_dir, tmp_path):
    import json
    import shutil
    from dataclasses import replace

    import pytest

    from osteolens.errors import OsteolensError
    from osteolens.inference.analyze import analyze_image
    from osteolens.inference.postprocess import MaskPostprocess
    from osteolens.inference.second_look import combine, lesion_views, views_probability
    from osteolens.io.images import read_image
    from osteolens.models.refiner import attach_refiner
    from osteolens.models.registry import load_model
    from osteolens.transforms.preprocess import network_grey

    run, summary = tiny_first_look_refiner_run
    meta = attach_refiner(tiny_source, run, tmp_path / "m", check_views=6)
    r = meta["refiner"]
    assert r["first_look"] is True and "first-look mask probability" in r["preprocessing"]
    assert r["export_check"]["max_abs_diff_probability"] <= 1e-4
    assert r["training"]["config"]["first_look_model"] == str(tiny_model)  # as the run named it
    # a refiner trained on another network's first look is refused
    shutil.copytree(run, tmp_path / "other_run")
    other = json.loads((tmp_path / "other_run" / "summary.json").read_text())
    other["first_look_model_sha256"] = "0" * 64
    (tmp_path / "other_run" / "summary.json").write_text(json.dumps(other))
    with pytest.raises(OsteolensError, match="trained on the first look of another network"):
        attach_refiner(tiny_source, tmp_path / "other_run", tmp_path / "m2")

    # the shipped network's first look, refined by this refiner reading it beside the top lesion's view
    shipped = load_model("osteolens-radiograph", threads=1)
    tiny = load_model(tmp_path / "m", threads=1)
    calib = {k: v for k, v in shipped.metadata["calibration"].items() if k != "second_look"}
    first_only = replace(shipped, refiner=None, metadata={**shipped.metadata, "calibration": calib})
    seed = MaskPostprocess.from_calibration(calib)
    settings = {"context": 3.0, "combine": "replace", "max_zoom": 6.0, "seed": seed.to_dict(), "network": "refiner"}
    looking = replace(shipped, refiner=tiny.refiner, metadata={**shipped.metadata, "refiner": r,
                                                              "calibration": {**calib, "second_look": settings}})
    arr, props = read_image(btxrd_dir / "images" / "IMG000004.png")
    clinical = {"age": 52, "sex": "M", "region": "lower limb", "view": "frontal"}
    first, second = analyze_image(first_only, arr, props, clinical), analyze_image(looking, arr, props, clinical)
    views = lesion_views(first.mask_probability, first.p_benign + first.p_malignant, seed, 3.0, 6.0, 1)
    seen = network_grey(first.grey, shipped.image_size)
    with_look = views_probability(looking, seen, views, arr.shape[:2], None, "refiner", first.mask_probability)
    blank = views_probability(looking, seen, views, arr.shape[:2], None, "refiner", np.zeros_like(first.mask_probability))
    assert np.allclose(second.mask_probability, combine(first.mask_probability, views, with_look, "replace"), atol=1e-6)
    assert np.abs(with_look[0] - blank[0]).max() > 1e-3  # the first look changes what the refiner draws
    with pytest.raises(ValueError, match="reads the first look beside each view"):
        views_probability(looking, seen, views, arr.shape[:2], None, "refiner")
