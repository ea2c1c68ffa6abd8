import numpy as np
import pytest
import torch

from osteolens.models.multitask import RadiographNet
from osteolens.training.cache import load_cached
from osteolens.training.trainer import to_input


@pytest.fixture(scope="module")
def real_batch(tiny_dataset):
    data = load_cached(tiny_dataset / "manifest.csv", 64, tiny_dataset / "cache")
    pick = np.r_[0:3, 16:19, 32:35]  # normal, benign and malignant cases
    x = to_input(torch.from_numpy(data.images[pick]).float().div(255).unsqueeze(1)).contiguous()
    return x, torch.from_numpy(data.clinical[pick])


@pytest.mark.parametrize("lesion_pooling", [False, True])
def test_cam_splits_the_class_logit_over_locations(real_batch, lesion_pooling):
    """The mean of each class map over the grid is the class logit less the bias and clinical terms."""
    x, clinical = real_batch
    torch.manual_seed(0)
    net = RadiographNet(64, n_clinical=clinical.shape[1], lesion_pooling=lesion_pooling).eval()
    with torch.no_grad():
        out = net(x, clinical)
    w, b = net.class_head.weight, net.class_head.bias
    image_part = out["class_logits"] - b - clinical @ w[:, -clinical.shape[1]:].T
    assert out["cam"].shape == (9, 3, 2, 2)
    assert torch.allclose(out["cam"].mean(dim=(2, 3)), image_part, atol=1e-4)
    assert image_part.abs().max() > 0.05  # the maps carry the logits, not zeros


def test_lesion_pooling_reads_the_mask_without_training_it(real_batch):
    x, clinical = real_batch
    torch.manual_seed(0)
    net = RadiographNet(64, n_clinical=clinical.shape[1], lesion_pooling=True).eval()
    assert net.class_head.in_features == 2 * 1280 + clinical.shape[1]
    out = net(x, clinical)
    out["class_logits"].sum().backward()
    assert net.decoder.final.weight.grad is None or not net.decoder.final.weight.grad.any()
    assert net.encoder.head[0].weight.grad.abs().sum() > 0
    # a network sure there is no lesion anywhere pools the lesion term to about zero
    with torch.no_grad():
        net.decoder.final.bias.fill_(-30.0)
        quiet = net(x, clinical)
        feats = net.encoder(x)[-1].mean(dim=(2, 3))
    w, b = net.class_head.weight, net.class_head.bias
    global_only = feats @ w[:, :1280].T + clinical @ w[:, -clinical.shape[1]:].T + b
    assert torch.allclose(quiet["class_logits"], global_only, atol=1e-4)
