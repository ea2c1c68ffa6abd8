import json
import shutil

import numpy as np
import pytest
import torch

from osteolens.errors import OsteolensError
from osteolens.models.export import load_run
from osteolens.models.registry import ModelIntegrityError, load_model, resolve_model
from osteolens.training.cache import load_cached
from osteolens.training.trainer import to_input


def test_onnx_matches_pytorch_on_real_images(tiny_run, tiny_model, tiny_dataset):
    meta = json.loads((tiny_model / "metadata.json").read_text())
    assert max(meta["export_check"]["max_abs_diff"][k] for k in ("class_logits", "subtype_logits", "mask_logits")) <= 1e-4
    assert meta["labels"] == ["normal", "benign", "malignant"] and len(meta["subtypes"]) == 9
    assert meta["preprocessing"]["image_size"] == 64 and meta["clinical"]["used"]
    # reload both and compare on other real images than the export check used
    cfg, _, _, net = load_run(tiny_run[0])
    data = load_cached(tiny_dataset / "manifest.csv", 64, tiny_dataset / "cache")
    x = to_input(torch.from_numpy(data.images[-6:]).float().div(255).unsqueeze(1)).contiguous()
    c = torch.from_numpy(data.clinical[-6:])
    with torch.no_grad():
        ref = net(x, c)
    got = load_model(tiny_model).run(x.numpy(), c.numpy())
    for k in ("class_logits", "subtype_logits", "mask_logits"):
        assert np.abs(ref[k].numpy() - got[k]).max() <= 1e-4, k
    assert np.allclose(got["cam"], ref["cam"].numpy(), rtol=1e-4, atol=1e-4)


def test_onnx_runs_at_other_sizes_like_pytorch(tiny_run, tiny_model, tiny_dataset):
    """The spatial axes are free: an enlarged view (for the mask) gives PyTorch's answer."""
    meta = json.loads((tiny_model / "metadata.json").read_text())
    assert meta["export_check"]["max_abs_diff_probabilities"]["mask_logits_at_96px"] <= 1e-4  # 64 * 1.25 -> 96
    _, _, _, net = load_run(tiny_run[0])
    data = load_cached(tiny_dataset / "manifest.csv", 128, tiny_dataset / "cache")
    x = to_input(torch.from_numpy(data.images[:3]).float().div(255).unsqueeze(1)).contiguous()
    c = torch.from_numpy(data.clinical[:3])
    with torch.no_grad():
        ref = net(x, c)
    got = load_model(tiny_model).run(x.numpy(), c.numpy())
    assert got["mask_logits"].shape == (3, 1, 128, 128) and got["cam"].shape == (3, 3, 4, 4)
    for k in ("class_logits", "mask_logits"):
        assert np.abs(ref[k].numpy() - got[k]).max() <= 1e-4, k


def test_tampered_model_is_refused(tiny_model, tmp_path):
    copy = tmp_path / "tampered"
    shutil.copytree(tiny_model, copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="does not match.*refusing"):
        load_model(copy)
    with pytest.raises(OsteolensError, match="unknown model 'no-such-model'"):
        resolve_model("no-such-model")


def test_shipped_default_model_verifies():
    from osteolens.models.registry import list_models

    names = list_models()
    assert "osteolens-radiograph" in names
    folder = resolve_model("osteolens-radiograph")
    meta = json.loads((folder / "metadata.json").read_text())
    assert sum(f.stat().st_size for f in folder.glob("*.onnx")) < 25 * 1024 * 1024  # the network and any refiner
    assert (folder / "MODEL_CARD.md").is_file()
    assert meta["calibration"]["temperature"] > 0


def test_non_default_architecture_exports_reloads_and_runs_at_other_sizes(tiny_config, tiny_dataset, tmp_path):
    """Lesion pooling and a narrower decoder: the run folder's config rebuilds the same network."""
    from osteolens.models.export import export_run
    from osteolens.training.trainer import train

    cfg = tiny_config.model_copy(update={"lesion_pooling": True, "decoder_widths": (48, 32, 16, 8), "limit_train": 11,
                                         "limit_val": 6})
    train(cfg, tmp_path / "run", show_progress=False)
    export_run(tmp_path / "run", tmp_path / "model", check_images=4)
    meta = json.loads((tmp_path / "model" / "metadata.json").read_text())
    assert max(meta["export_check"]["max_abs_diff"][k] for k in ("class_logits", "subtype_logits", "mask_logits")) <= 1e-4
    _, _, _, net = load_run(tmp_path / "run")
    assert net.lesion_pooling
    assert [stage[0].out_channels for stage in net.decoder.stages] == [48, 32, 16, 8]
    data = load_cached(tiny_dataset / "manifest.csv", 128, tiny_dataset / "cache")
    x = to_input(torch.from_numpy(data.images[16:19]).float().div(255).unsqueeze(1)).contiguous()
    c = torch.from_numpy(data.clinical[16:19])
    with torch.no_grad():
        ref = net(x, c)
    got = load_model(tmp_path / "model").run(x.numpy(), c.numpy())
    for k in ("class_logits", "mask_logits", "cam"):
        assert np.abs(ref[k].numpy() - got[k]).max() <= 1e-4 * max(1.0, float(ref[k].abs().max())), k
