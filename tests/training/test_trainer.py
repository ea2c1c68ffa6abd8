import json
import warnings

import numpy as np
import pytest
import torch

from osteolens.errors import OsteolensError
from osteolens.training.cache import load_cached
from osteolens.training.calibration import best_mask_threshold, fit_temperature, malignant_threshold, normalised_entropy, softmax
from osteolens.training.config import load_config
from osteolens.transforms.augment import AugmentConfig, RadiographAugment


def test_one_epoch_on_real_images_writes_the_run(tiny_run):
    run, summary = tiny_run
    assert summary["epochs_run"] == 1 and summary["n_train"] == 33 and summary["n_val"] == 15
    for name in ("config.json", "metrics.csv", "best.pt", "calibration.json", "summary.json"):
        assert (run / name).is_file()
    saved = json.loads((run / "config.json").read_text())
    assert saved["image_size"] == 64 and saved["epochs"] == 1
    row = open(run / "metrics.csv").read().splitlines()
    assert len(row) == 2 and "val_macro_auc" in row[0]
    cal = json.loads((run / "calibration.json").read_text())
    assert cal["temperature"] > 0 and 0 <= cal["malignant_threshold"] <= 1
    assert cal["val_malignant_sensitivity"] >= 0.92 - 1e-9  # threshold reaches the target on validation
    assert np.isfinite(summary["best_val"]["train_loss"])
    assert summary["planned_epochs"] == 1 and summary["schedule_fraction_run"] == 1.0


def test_time_budget_stops_the_run_and_the_summary_says_how_much_of_the_schedule_ran(tiny_config, tmp_path):
    from osteolens.training.trainer import train

    cfg = tiny_config.model_copy(update={"epochs": 3, "warmup_epochs": 0.0, "max_minutes": 1e-4})
    summary = train(cfg, tmp_path, show_progress=False)
    assert summary["epochs_run"] == 1 and summary["stop_reason"].startswith("time budget")
    # 3 of 9 planned steps (33 images in batches of 11), so the cosine was cut at a third:
    # the last step ran at 0.5 * (1 + cos(pi * 2 / 9)) of the peak learning rate
    assert summary["schedule_fraction_run"] == pytest.approx(1 / 3, abs=1e-4)
    assert summary["final_lr_factor"] == pytest.approx(0.5 * (1 + np.cos(np.pi * 2 / 9)), abs=1e-4)


def test_a_schedule_fitted_to_the_budget_runs_to_its_end_instead_of_being_cut(tiny_config, tmp_path):
    from osteolens.training.trainer import epochs_for_budget, train

    cfg = tiny_config.model_copy(update={"epochs": 3, "warmup_epochs": 0.0, "max_minutes": 1e-4,
                                         "fit_epochs_to_budget": True})
    summary = train(cfg, tmp_path, show_progress=False)
    assert summary["epochs_run"] == summary["planned_epochs"] == 1 and summary["config_epochs"] == 3
    assert "1 of 3 fitted to the" in summary["stop_reason"]
    # the cosine was re-planned over the one epoch that fits: its 3 steps are the whole schedule
    assert summary["schedule_fraction_run"] == 1.0
    assert summary["final_lr_factor"] == pytest.approx(0.5 * (1 + np.cos(np.pi * 2 / 3)), abs=1e-4)
    # a slow CPU (first epoch 10.5 min, 9.5 a later one) fits 5 epochs of 16 in 57 minutes; a fast one all 16
    full = cfg.model_copy(update={"epochs": 16, "max_minutes": 57})
    assert epochs_for_budget(full, 1, 10.5, 9.5) == 5 and epochs_for_budget(full, 1, 3.5, 3.2) == 16
    assert epochs_for_budget(full, 1, 58.0, 9.5) == 1  # the first epoch alone overran: it is the run
    # epochs that slow down (6.9 min, then 8.9): after 3 epochs and 24.3 minutes, 3 more fit at the slowest pace, where
    # the first epoch's pace promised 4
    assert epochs_for_budget(full, 3, 24.3, 8.9) == 6 and epochs_for_budget(full, 3, 24.3, 6.9) == 7


def test_training_changed_the_weights(tiny_run):
    from osteolens.models.multitask import RadiographNet

    run, _ = tiny_run
    trained = torch.load(run / "best.pt", weights_only=True)
    init = RadiographNet(64, n_clinical=9).state_dict()
    head = "class_head.weight"
    assert not torch.allclose(trained[head], init[head])
    # frozen stem keeps its ImageNet weights
    stem = "encoder.stem.0.weight"
    assert torch.allclose(trained[stem], init[stem])


def test_cache_holds_real_pixels(tiny_dataset):
    data = load_cached(tiny_dataset / "manifest.csv", 64, tiny_dataset / "cache")
    assert data.images.shape == (48, 64, 64) and data.images.dtype == np.uint8
    assert data.images.std() > 10
    assert (data.masks[data.labels == 0] == 0).all() and data.masks[data.labels > 0].sum() > 0
    assert set(data.labels.tolist()) == {0, 1, 2} and (data.subtypes[data.labels > 0] >= 0).all()


def test_two_runs_building_one_cache_at_once_both_get_it(tiny_dataset, tmp_path, monkeypatch):
    """Two runs started together on one manifest (a sweep) build the same cache at the same moment;
    each writes its own temporary file, so neither finds the other's renamed away under it."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    both_written = threading.Barrier(2, timeout=60)
    savez = np.savez

    def savez_together(*args, **kwargs):
        savez(*args, **kwargs)
        both_written.wait()  # neither build renames its file before the other has written one

    monkeypatch.setattr(np, "savez", savez_together)
    with ThreadPoolExecutor(2) as pool:
        builds = [pool.submit(load_cached, tiny_dataset / "manifest.csv", 32, tmp_path) for _ in range(2)]
        first, second = (b.result() for b in builds)
    assert np.array_equal(first.images, second.images) and first.images.shape == (48, 32, 32)
    assert [p.name for p in tmp_path.iterdir()] == [next(tmp_path.glob("cache_*_32.npz")).name]


def test_a_config_that_crops_flat_borders_caches_the_box_inside_them(tiny_config, tiny_dataset):
    """``crop_uniform_border``: each image and its mask cut to the box inside its flat border, then resized."""
    from osteolens.data.manifest import load_manifest
    from osteolens.io.images import read_image, read_mask, to_unit_grey
    from osteolens.transforms.preprocess import resize, to_uint8, uniform_border_box

    whole = tiny_config.cached()
    cut = tiny_config.model_copy(update={"crop_uniform_border": 1.5 / 255}).cached()
    cases = load_manifest(tiny_dataset / "manifest.csv").cases
    boxes = [uniform_border_box(to_unit_grey(*read_image(c.image)), 1.5 / 255) for c in cases]
    framed = [i for i, b in enumerate(boxes) if b is not None]
    assert 5 <= len(framed) < len(cases)  # BTXRD: about 4 in 10 images have a flat border
    same = [i for i, b in enumerate(boxes) if b is None]
    assert np.array_equal(cut.images[same], whole.images[same]) and np.array_equal(cut.masks[same], whole.masks[same])
    assert not np.array_equal(cut.images[framed], whole.images[framed])
    i = next(k for k in framed if cases[k].label != "normal")
    x0, y0, x1, y1 = boxes[i]
    unit = to_unit_grey(*read_image(cases[i].image))
    assert np.array_equal(cut.images[i], to_uint8(resize(unit[y0:y1, x0:x1], 64)))
    mask = read_mask(cases[i].mask).astype(np.uint8)
    assert mask[y0:y1, x0:x1].sum() == mask.sum()  # the lesion lies inside the box
    assert np.array_equal(cut.masks[i], resize(mask[y0:y1, x0:x1], 64, nearest=True))


def test_augment_keeps_image_and_mask_aligned():
    aug = RadiographAugment(AugmentConfig(hflip=1.0, rotate_deg=0, scale=0, translate=0, brightness=0, contrast=0, gamma=0, clahe=0), seed=0)
    img = np.zeros((1, 32, 32), np.uint8)
    img[0, 10:20, 2:8] = 200
    x, m = aug(img, (img > 0).astype(np.uint8))
    assert torch.equal((x[0, 0] > 0.5), m[0, 0].bool())
    assert m[0, 0, 15, 26] == 1 and m[0, 0, 15, 4] == 0  # flipped left-right


def test_lesion_zoom_fills_the_view_with_the_lesion_and_keeps_the_mask_aligned():
    off = dict(hflip=0, rotate_deg=0, scale=0, translate=0, brightness=0, contrast=0, gamma=0, clahe=0)
    aug = RadiographAugment(AugmentConfig(**off, lesion_zoom=1.0, lesion_context=(4.0, 4.0), max_zoom=4.0), seed=0)
    img = np.zeros((2, 64, 64), np.uint8)
    img[0, 40:48, 8:16] = 200  # an 8-px lesion near the lower-left corner
    x, m, zoomed = aug(img, (img > 0).astype(np.uint8), return_zoomed=True)
    assert zoomed.tolist() == [True, True]  # the image without a lesion is zoomed in at random
    ys, xs = np.nonzero(m[0, 0].numpy())
    # 8 px is 1/8 of the side; with context 4 the view is zoomed x2 and the lesion spans 16 px
    assert xs.max() + 1 - xs.min() == 16 and ys.max() + 1 - ys.min() == 16
    assert torch.equal(x[0, 0] > 100 / 255, m[0, 0].bool())  # the image warped with the mask
    # the view stays inside the image (x pixels 0-31 enlarged), so the lesion is not centred in x (24-39)
    assert xs.min() == 16 and ys.min() == 24 and m[1].sum() == 0
    unzoomed = RadiographAugment(AugmentConfig(**off), seed=0)(img, (img > 0).astype(np.uint8))[1]
    assert unzoomed[0, 0].sum() == 64


def test_acquisition_augmentations_degrade_real_radiographs_as_documented(btxrd_dir):
    """JPEG, resolution loss, blur and noise each change a real radiograph by the amount their range
    implies, never touch the mask, and replay exactly from the seed; off, they draw nothing."""
    from PIL import Image

    from osteolens.transforms.augment import gaussian_blur, jpeg_reencode, resolution_loss

    real = np.asarray(Image.open(btxrd_dir / "images" / "IMG000031.png").convert("L"))
    img = np.stack([real, real])
    mask = np.asarray(Image.open(btxrd_dir / "masks" / "IMG000031.png")) > 0
    masks = np.stack([mask, mask]).astype(np.uint8)
    off = dict(hflip=0, rotate_deg=0, scale=0, translate=0, brightness=0, contrast=0, gamma=0, clahe=0)
    plain = RadiographAugment(AugmentConfig(**off), seed=3)(img, masks)[0]
    assert torch.allclose(plain[0, 0], torch.from_numpy(real.copy()).float() / 255, atol=1e-4)  # identity warp

    def change(a):  # mean absolute change in grey levels
        return float(np.abs(a.astype(float) - real).mean())

    # each transform: small at its mildest setting, larger at its strongest
    assert 0 < change(jpeg_reencode(real, 90)) < change(jpeg_reencode(real, 30)) < 4
    assert 0 < change(resolution_loss(real, 0.8)) < change(resolution_loss(real, 0.4)) < 6
    assert 0 < change(gaussian_blur(real, 0.5)) < change(gaussian_blur(real, 1.5)) < 6
    for field in ("jpeg", "downscale", "blur", "noise"):
        aug = AugmentConfig(**off, **{field: 1.0})
        x, m = RadiographAugment(aug, seed=3)(img, masks)
        again = RadiographAugment(aug, seed=3)(img, masks)[0]
        assert torch.equal(x, again), field
        assert torch.equal(m[:, 0].bool(), torch.from_numpy(masks > 0)), field
        diff = (x - plain).abs().mean().item() * 255
        assert 0.05 < diff < 12, (field, diff)
    # a share of 0.5 touches some images of a batch and leaves others as they were
    batch = np.repeat(img[:1], 16, axis=0)
    x = RadiographAugment(AugmentConfig(**off, blur=0.5), seed=0)(batch, np.repeat(masks[:1], 16, axis=0))[0]
    touched = [(x[i] - plain[0]).abs().max().item() > 0 for i in range(16)]
    assert 0 < sum(touched) < 16


def test_counterfactual_normals_erase_real_lesions_and_relabel_them_normal(btxrd_dir):
    """A chosen tumour image loses its lesion (filled from the bone around it) and becomes normal with an empty mask
    and no subtype; pixels away from the lesion and normal images are untouched; share 0 draws nothing."""
    from PIL import Image
    from scipy.ndimage import distance_transform_edt

    from osteolens.transforms.augment import counterfactual_normals

    def load(case):
        img = np.asarray(Image.open(btxrd_dir / "images" / f"{case}.png").convert("L"))
        return img, (np.asarray(Image.open(btxrd_dir / "masks" / f"{case}.png")) > 0).astype(np.uint8)

    (tumour, lesion), (normal, empty) = load("IMG000031"), load("IMG002000")
    assert lesion.any() and not empty.any()
    images, masks = np.stack([tumour, normal]), np.stack([lesion, empty])
    labels, subtypes = np.array([1, 0]), np.array([4, -1])
    rng = np.random.default_rng(0)
    same = counterfactual_normals(images, masks, labels, subtypes, 0.0, 12, rng)
    assert all(a is b for a, b in zip(same, (images, masks, labels, subtypes)))
    assert rng.random() == np.random.default_rng(0).random()  # no draw when off
    out_images, out_masks, out_labels, out_subtypes = counterfactual_normals(
        images, masks, labels, subtypes, 1.0, 12, np.random.default_rng(0))
    assert out_labels.tolist() == [0, 0] and out_subtypes.tolist() == [-1, -1] and not out_masks.any()
    assert labels.tolist() == [1, 0] and masks[0].any()  # the batch given is not changed
    assert np.array_equal(out_images[1], normal)
    away = distance_transform_edt(lesion == 0) > 13  # beyond the 12-px margin
    assert np.array_equal(out_images[0][away], tumour[away])
    inside = lesion > 0
    changed = np.abs(out_images[0][inside].astype(float) - tumour[inside]).mean()
    assert changed > 5, changed  # the lesion's own grey is gone, not copied back

    # decoys: every image gets a patch of the lesion's shape away from any lesion; labels and masks stay
    decoyed, decoy_masks, decoy_labels, decoy_subtypes = counterfactual_normals(
        images, masks, labels, subtypes, 0.0, 12, np.random.default_rng(1), decoy_share=1.0)
    assert decoy_labels.tolist() == [1, 0] and decoy_subtypes.tolist() == [4, -1]
    assert np.array_equal(decoy_masks, masks)
    near = distance_transform_edt(lesion == 0) <= 12
    assert np.array_equal(decoyed[0][near], tumour[near])  # the tumour's own lesion is still there
    for before, after in ((tumour, decoyed[0]), (normal, decoyed[1])):
        touched = before != after
        assert 0 < touched.sum() < 0.5 * touched.size  # a patch, not the whole image


def test_temperature_and_helpers():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    logits = rng.normal(size=(400, 3))
    logits[np.arange(400), y] += 1.0
    t = fit_temperature(logits * 4, y)  # over-confident logits need T > 1
    assert t > 2
    assert normalised_entropy(np.array([1 / 3, 1 / 3, 1 / 3])) == pytest.approx(1.0)
    assert softmax(np.array([0.0, 0.0])).tolist() == [0.5, 0.5]
    probs = np.zeros((2, 4, 4)); probs[:, :2, :2] = 0.8
    masks = np.zeros((2, 4, 4)); masks[:, :2, :2] = 1
    assert best_mask_threshold(probs, masks) == (0.3, 1.0)
    assert malignant_threshold(y, softmax(logits)[:, 2], 0.9) > 0
    with pytest.raises(OsteolensError, match="none of the 400 calibration images is malignant"):
        malignant_threshold(np.where(y == 2, 1, y), softmax(logits)[:, 2], 0.9)


def test_config_errors_name_the_field(tmp_path):
    p = tmp_path / "c.json"
    p.write_text('{"manifest": "m.csv", "splits": "s.csv", "image_size": 100}')
    with pytest.raises(OsteolensError, match="image_size.*multiple of 32"):
        load_config(p)
    p.write_text('{"manifest": "m.csv"')
    with pytest.raises(OsteolensError, match="not valid JSON"):
        load_config(p)
    p.write_text('{"manifest": "m.csv", "splits": "s.csv", "image_size": 320, "low_res_size": 320, "low_res_epochs": 5}')
    with pytest.raises(OsteolensError, match="low_res_size must be .*below image_size \\(320\\), got 320"):
        load_config(p)
    p.write_text('{"manifest": "m.csv", "splits": "s.csv", "crop_noisy_border": true}')
    with pytest.raises(OsteolensError, match="crop_noisy_border needs crop_uniform_border"):
        load_config(p)
    p.write_text('{"manifest": "m.csv", "splits": "s.csv", "decoder_widths": [96, 64, 32]}')
    with pytest.raises(OsteolensError, match="decoder_widths"):
        load_config(p)
    p.write_text('{"manifest": "m.csv", "splits": "s.csv", "device": "tpu"}')
    with pytest.raises(OsteolensError, match="device: Input should be 'cpu' or 'cuda'"):
        load_config(p)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_asking_for_a_gpu_where_there_is_none_is_a_clear_error(tiny_config, tmp_path):
    from osteolens.training.trainer import train

    with pytest.raises(OsteolensError, match="device 'cuda' but PyTorch sees no GPU"):
        train(tiny_config.model_copy(update={"device": "cuda"}), tmp_path / "run", show_progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything is written


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_gpu_run_writes_the_same_run_folder_and_its_checkpoint_loads_on_the_cpu(tiny_config, tmp_path):
    from osteolens.training.trainer import build_model, predict_cached, train

    summary = train(tiny_config.model_copy(update={"device": "cuda", "precision": "bfloat16"}), tmp_path / "run",
                    show_progress=False)
    assert summary["device"] != "cpu" and summary["epochs_run"] == 1
    model = build_model(tiny_config.model_copy(update={"pretrained": False}))
    model.load_state_dict(torch.load(tmp_path / "run" / "best.pt", map_location="cpu", weights_only=True))
    data = load_cached(tiny_config.manifest, tiny_config.image_size, tiny_config.cache_folder)
    cpu = predict_cached(model, data.images[:4], data.clinical[:4])
    gpu = predict_cached(model.cuda(), data.images[:4], data.clinical[:4])
    assert np.allclose(cpu["class_logits"], gpu["class_logits"], atol=1e-3)


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_uses_bfloat16_only_where_the_hardware_has_it(native, monkeypatch):
    from osteolens.training import trainer

    monkeypatch.setattr(trainer, "native_bfloat16", lambda device: native)
    cpu = torch.device("cpu")
    assert trainer.resolve_precision("auto", cpu) == ("bfloat16" if native else "float32")
    assert trainer.resolve_precision("float32", cpu) == "float32"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert trainer.resolve_precision("bfloat16", cpu) == "bfloat16"  # asked for: kept, but warned where emulated
    assert len([w for w in caught if "several times slower" in str(w.message)]) == (0 if native else 1)


def test_an_auto_run_records_the_precision_it_used(tiny_config, tmp_path, monkeypatch):
    from osteolens.training import trainer

    monkeypatch.setattr(trainer, "native_bfloat16", lambda device: False)
    cfg = tiny_config.model_copy(update={"precision": "auto", "limit_train": 8, "limit_val": 6})
    summary = trainer.train(cfg, tmp_path, show_progress=False)
    assert json.loads((tmp_path / "config.json").read_text())["precision"] == "float32" == summary["precision"]


def _head_steps(run_a, run_b, cfg):
    """How far each run's class head moved from the seeded initial weights (flattened); the checkpoints and the start."""
    from osteolens.training.trainer import build_model, seed_everything

    seed_everything(cfg.seed)
    init = build_model(cfg).state_dict()
    a, b = torch.load(run_a / "best.pt", weights_only=True), torch.load(run_b / "best.pt", weights_only=True)
    head = "class_head.weight"
    return (a[head] - init[head]).flatten(), (b[head] - init[head]).flatten(), a, b, init


def test_bfloat16_training_changes_the_arithmetic_not_the_model(tiny_config, tiny_run, tmp_path):
    from osteolens.training.trainer import native_bfloat16, train

    cfg = tiny_config.model_copy(update={"precision": "bfloat16"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = train(cfg, tmp_path, show_progress=False)
    emulated = [w for w in caught if "emulates it" in str(w.message)]
    assert bool(emulated) != native_bfloat16(torch.device("cpu"))  # warned exactly where bfloat16 is emulated
    assert np.isfinite(summary["best_val"]["train_loss"]) and json.loads((tmp_path / "config.json").read_text())["precision"] == "bfloat16"
    step_bf, step_fp, bf, fp, _ = _head_steps(tmp_path, tiny_run[0], cfg)
    assert all(v.dtype == fp[k].dtype for k, v in bf.items())  # the weights stay float32
    assert not torch.equal(step_bf, step_fp)  # the forward pass really ran in bfloat16 ...
    cosine = torch.nn.functional.cosine_similarity(step_bf, step_fp, dim=0).item()
    # ... and stepped the same way: AdamW's first steps are close to sign steps, so a small gradient whose sign
    # bfloat16 rounding flips moves a whole step (measured cosine: 0.82)
    assert cosine > 0.7, cosine


def test_weight_average_is_what_validation_sees_and_the_checkpoint_holds(tiny_config, tiny_run, tmp_path):
    from osteolens.training.trainer import train

    cfg = tiny_config.model_copy(update={"ema_decay": 0.5})
    summary = train(cfg, tmp_path, show_progress=False)
    # against the same seed and steps without the average
    step_ema, step_raw, ema, _, init = _head_steps(tmp_path, tiny_run[0], cfg)
    # the average of the three iterates lags the last one but lies on the same path
    ratio = (step_ema.norm() / step_raw.norm()).item()
    assert 0.3 < ratio < 0.95, ratio  # measured 0.69
    assert torch.nn.functional.cosine_similarity(step_ema, step_raw, dim=0).item() > 0.9  # measured 0.99
    assert torch.equal(ema["encoder.stem.0.weight"], init["encoder.stem.0.weight"])  # frozen layers stay ImageNet's
    # validation scored the average, not the last iterate (measured macro AUC 0.41 against 0.46)
    assert summary["best_val"]["val_macro_auc"] != tiny_run[1]["best_val"]["val_macro_auc"]


def test_progressive_resizing_trains_small_first_and_validates_at_full_size(tiny_config, tiny_dataset, tmp_path):
    from osteolens.training.trainer import shrink_batch, train

    data = load_cached(tiny_dataset / "manifest.csv", 96, tiny_dataset / "cache")
    x, m = RadiographAugment(AugmentConfig(hflip=0, rotate_deg=0, scale=0, translate=0, brightness=0, contrast=0,
                                           gamma=0, clahe=0))(data.images[16:24], data.masks[16:24])
    xs, ms = shrink_batch(x, m, 64)
    assert xs.shape == ms.shape == (8, 1, 64, 64) and 0 <= float(xs.min()) and float(xs.max()) <= 1
    # the lesions keep their share of the image, and the image its brightness
    assert torch.allclose(ms.mean(dim=(1, 2, 3)), m.mean(dim=(1, 2, 3)), rtol=0.05, atol=2e-4)
    assert float((xs.mean() - x.mean()).abs()) < 0.01
    cfg = tiny_config.model_copy(update={"image_size": 96, "low_res_size": 64, "low_res_epochs": 1, "epochs": 2})
    summary = train(cfg, tmp_path, show_progress=False)
    sizes = [line.split(",")[1] for line in open(tmp_path / "metrics.csv").read().splitlines()]
    assert sizes == ["train_size", "64", "96"] and summary["epochs_run"] == 2
    assert json.loads((tmp_path / "calibration.json").read_text())["temperature"] > 0
