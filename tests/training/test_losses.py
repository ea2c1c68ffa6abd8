import torch

from osteolens.training.losses import multitask_loss, soft_dice_loss


def _outputs():
    g = torch.Generator().manual_seed(0)
    return {"class_logits": torch.randn(4, 3, generator=g, requires_grad=True),
            "subtype_logits": torch.randn(4, 9, generator=g, requires_grad=True),
            "mask_logits": torch.randn(4, 1, 8, 8, generator=g, requires_grad=True)}


def _targets():
    labels = torch.tensor([0, 1, 2, 1])
    subtypes = torch.tensor([-1, 0, 5, 3])
    masks = torch.zeros(4, 1, 8, 8)
    masks[1:, :, 2:5, 2:5] = 1
    return labels, subtypes, masks


def test_soft_dice_is_zero_for_a_confident_perfect_mask_and_one_for_a_miss():
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:6, 2:6] = 1
    assert soft_dice_loss((target * 2 - 1) * 50, target).item() < 1e-3
    assert soft_dice_loss(torch.full_like(target, -50.0), target).item() > 0.9


def test_mask_weight_zero_leaves_the_decoder_without_gradient():
    out = _outputs()
    labels, subtypes, masks = _targets()
    total, parts = multitask_loss(out, labels, subtypes, masks, torch.ones(3), mask_weight=0.0, subtype_weight=0.3)
    total.backward()
    assert out["mask_logits"].grad is None
    assert abs(total.item() - (parts["cls"] + 0.3 * parts["subtype"])) < 1e-5
    assert parts["dice_loss"] > 0  # still reported


def test_mask_terms_enter_the_total_with_their_weight():
    labels, subtypes, masks = _targets()
    out = _outputs()
    total, parts = multitask_loss(out, labels, subtypes, masks, torch.ones(3), mask_weight=2.0, subtype_weight=0.0)
    total.backward()
    assert out["mask_logits"].grad.abs().sum() > 0
    assert abs(total.item() - (parts["cls"] + 2.0 * (parts["bce"] + parts["dice_loss"]))) < 1e-5


def test_class_keep_leaves_zoomed_views_to_the_mask_terms():
    labels, subtypes, masks = _targets()
    keep = torch.tensor([True, False, True, True])
    out = _outputs()
    total, parts = multitask_loss(out, labels, subtypes, masks, torch.ones(3), mask_weight=1.0, subtype_weight=0.3, class_keep=keep)
    total.backward()
    assert out["class_logits"].grad[1].abs().sum() == 0 and out["subtype_logits"].grad[1].abs().sum() == 0
    assert out["mask_logits"].grad[1].abs().sum() > 0  # the zoomed view still trains the mask
    kept = _outputs()
    sub = {k: v[keep] for k, v in kept.items()}
    _, on_subset = multitask_loss(sub, labels[keep], subtypes[keep], masks[keep], torch.ones(3), 1.0, 0.3)
    _, everyone = multitask_loss(_outputs(), labels, subtypes, masks, torch.ones(3), 1.0, 0.3)
    assert abs(parts["cls"] - on_subset["cls"]) < 1e-6 and abs(parts["subtype"] - on_subset["subtype"]) < 1e-6
    assert parts["bce"] == everyone["bce"] and parts["dice_loss"] == everyone["dice_loss"]
