"""A refiner that reads the whole-image network's first look beside each view."""

import numpy as np
import torch


def test_the_first_look_rides_as_a_second_channel_cut_with_the_views_geometry(tiny_dataset, tiny_model):
    from osteolens.models.recalibrate import predict_onnx
    from osteolens.models.registry import load_model
    from osteolens.training.refiner import (RefinerConfig, ViewSampler, _split_indices, first_look_maps, refiner_input,
                                            validation_frames, validation_views)

    cfg = RefinerConfig(manifest=tiny_dataset / "manifest.csv", splits=tiny_dataset / "splits.csv", image_size=64,
                        input_size=64, lesion_views=4, normal_views=2, first_look_model=str(tiny_model),
                        first_look_dropout=0.0, cache_dir=tiny_dataset / "cache")
    data = cfg.cached()
    train, val = _split_indices(cfg, data.case_ids)
    maps, sha = first_look_maps(cfg, data, val)
    model = load_model(tiny_model)
    assert sha == model.metadata["sha256"]
    expected = predict_onnx(model, data.images[val], data.clinical[val] if model.uses_clinical else None)["mask_prob"]
    assert np.abs(maps[val] / 255.0 - expected).max() <= 0.5 / 255 + 1e-6 and not maps[train].any()
    views, masks = validation_views(cfg, data, maps)
    plain, same_masks = validation_views(cfg.model_copy(update={"first_look_model": None}), data)
    assert views.shape[1] == 2 and plain.shape[1] == 1 and torch.equal(views[:, :1], plain) and torch.equal(masks, same_masks)
    idx, zooms, centres = validation_frames(cfg, data)
    assert len(idx) == len(views)
    x = refiner_input(views)
    assert torch.allclose(x[:, 2], (views[:, 1] - 0.5) / 0.25) and torch.allclose(x[:, :2], refiner_input(plain)[:, :2])
    sampler = ViewSampler(cfg, data, train, maps)
    batch, m = sampler(sampler.tumour[:4])
    assert batch.shape == (6, 2, 64, 64) and not batch[:, 1].any()  # training images have no first look in these maps
    full = first_look_maps(cfg, data, train)[0]
    batch, m = ViewSampler(cfg, data, train, full)(sampler.tumour[:4])
    assert batch[:4, 1].amax() > 0.1  # the tiny network's first look over its own lesions


def test_a_first_look_model_reading_other_images_is_refused(tiny_dataset, tiny_model):
    import pytest

    from osteolens.training.refiner import RefinerConfig, first_look_maps

    cfg = RefinerConfig(manifest=tiny_dataset / "manifest.csv", splits=tiny_dataset / "splits.csv", image_size=96,
                        input_size=64, first_look_model=str(tiny_model), cache_dir=tiny_dataset / "cache")
    with pytest.raises(ValueError, match="reads 64-px images"):
        first_look_maps(cfg, None, np.array([0]))

