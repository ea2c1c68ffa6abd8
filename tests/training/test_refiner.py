import json

import numpy as np
import pytest
import torch

from osteolens.errors import OsteolensError
from osteolens.training.refiner import RefinerConfig, ViewSampler, cut_views, frame, lesion_boxes, min_lesion_pixels


def test_a_view_frames_its_lesion_a_third_of_its_side_and_cuts_image_and_mask_alike():
    img = np.zeros((1, 60, 60), np.uint8)
    img[0, :, :] = np.arange(60, dtype=np.uint8)[None, :] * 4  # brightness grows left to right
    mask = np.zeros((1, 60, 60), np.uint8)
    mask[0, 20:30, 20:30] = 1
    zoom, centre = frame((20, 20, 30, 30), (60, 60), context=3.0, max_zoom=6.0)
    assert zoom == pytest.approx(2.0) and np.allclose(centre, [-1 / 6, -1 / 6])  # a 30-px view centred on (25, 25)
    x, m = cut_views(img, mask, np.array([zoom]), centre[None], size=30)
    assert x.shape == m.shape == (1, 1, 30, 30)
    rows, cols = np.nonzero(m[0, 0].numpy())
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (10, 19, 10, 19)  # the view spans pixels 10-39
    assert x[0, 0, 0, :].numpy() * 255 == pytest.approx(np.arange(10, 40) * 4, abs=1e-3)
    flipped, fm = cut_views(img, mask, np.array([zoom]), centre[None], size=30, flip=np.array([True]))
    assert torch.allclose(flipped, x.flip(-1), atol=1e-6) and torch.equal(fm, m.flip(-1))


def test_lesion_boxes_skip_annotation_specks():
    m = np.zeros((40, 40), np.uint8)
    m[5:9, 5:12] = 1
    m[30:32, 30:32] = 1  # 4 pixels
    m[20:24, 30:33] = 1
    assert lesion_boxes(m) == [(5, 5, 12, 9), (30, 20, 33, 24)]
    assert lesion_boxes(m, min_lesion_pixels(160)) == [(5, 5, 12, 9), (30, 20, 33, 24), (30, 30, 32, 32)]  # 2 px at 160


def test_lesion_views_hold_their_lesion_and_normal_views_none(tiny_dataset):
    cfg = RefinerConfig(manifest=tiny_dataset / "manifest.csv", splits=tiny_dataset / "splits.csv", image_size=64,
                        input_size=64, lesion_views=4, normal_views=2, cache_dir=tiny_dataset / "cache")
    data = cfg.cached()
    train = np.flatnonzero(data.labels >= 0)[:33]
    sampler = ViewSampler(cfg, data, train)
    smallest = min_lesion_pixels(64)  # a speck of 9 pixels at 320 px is one pixel at 64
    assert smallest == 1
    assert len(sampler.tumour) == sum(bool(lesion_boxes(data.masks[i], smallest)) for i in train if data.labels[i] > 0)
    x, m = sampler(sampler.tumour[:4])
    assert x.shape == m.shape == (6, 1, 64, 64)
    assert (m[:4].flatten(1).sum(1) > 0).all() and (m[4:] == 0).all()
    assert 0 <= float(x.min()) and float(x.max()) <= 1 and float(x.std()) > 0.05
    again = ViewSampler(cfg, data, train)(sampler.tumour[:4])  # seeded: a run is reproducible
    assert torch.equal(again[0], x) and torch.equal(again[1], m)


def test_a_refiner_run_trains_on_real_views_and_writes_its_folder(tiny_refiner_run):
    from osteolens.models.refiner import LesionRefiner

    run, summary = tiny_refiner_run
    for name in ("config.json", "metrics.csv", "best.pt", "last.pt", "summary.json"):
        assert (run / name).is_file()
    assert json.loads((run / "config.json").read_text())["input_size"] == 64
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[0].startswith("epoch,lr,loss,val_view_dice")
    assert summary["epochs_run"] == summary["best_epoch"] == 1 and summary["n_val_views"] > 0
    assert 0 <= summary["best_val_view_dice"] <= 1
    trained = torch.load(run / "best.pt", weights_only=True)
    init = LesionRefiner(64, pretrained=True).state_dict()
    assert not torch.allclose(trained["decoder.final.weight"], init["decoder.final.weight"])


def test_too_few_tumour_images_for_a_batch_is_refused(tiny_dataset, tmp_path):
    from osteolens.training.refiner import train_refiner

    cfg = RefinerConfig(manifest=tiny_dataset / "manifest.csv", splits=tiny_dataset / "splits.csv", image_size=64,
                        input_size=64, lesion_views=500, cache_dir=tiny_dataset / "cache")
    with pytest.raises(ValueError, match="fewer than one batch"):
        train_refiner(cfg, tmp_path, show_progress=False)


def test_a_bad_refiner_config_names_the_field(tmp_path):
    from osteolens.training.config import load_config

    p = tmp_path / "refiner.json"
    p.write_text(json.dumps({"manifest": "m.csv", "splits": "s.csv", "input_size": 100}))
    with pytest.raises(OsteolensError, match="input_size: .*multiple of 32"):
        load_config(p, RefinerConfig)
