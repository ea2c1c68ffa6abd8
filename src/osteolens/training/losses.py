"""Losses of the multitask model: weighted cross-entropy, subtype cross-entropy, BCE + Dice."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per image, averaged (``(B, 1, H, W)`` logits and 0/1 target)."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    inter = (p * t).sum(1)
    return (1 - (2 * inter + eps) / (p.sum(1) + t.sum(1) + eps)).mean()


def multitask_loss(out: dict, labels: torch.Tensor, subtypes: torch.Tensor, masks: torch.Tensor,
                   class_weights: torch.Tensor, mask_weight: float, subtype_weight: float,
                   class_keep: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Total loss and its parts.

    The class term is class-weighted cross-entropy; the subtype term counts tumour images only;
    the mask term is BCE on every image (normal images teach empty masks) plus soft Dice on
    tumour images. ``class_keep`` (boolean per sample) limits the class and subtype terms to
    those samples (zoomed-in views can be left to the mask alone).
    """
    keep = torch.ones_like(labels, dtype=torch.bool) if class_keep is None else class_keep
    cls = F.cross_entropy(out["class_logits"][keep], labels[keep], weight=class_weights) if keep.any() else \
        out["class_logits"].sum() * 0
    has_sub = (subtypes >= 0) & keep
    sub = F.cross_entropy(out["subtype_logits"][has_sub], subtypes[has_sub]) if has_sub.any() else cls.new_zeros(())
    bce = F.binary_cross_entropy_with_logits(out["mask_logits"], masks)
    tumour = labels > 0
    dice = soft_dice_loss(out["mask_logits"][tumour], masks[tumour]) if tumour.any() else cls.new_zeros(())
    total = cls + subtype_weight * sub
    if mask_weight:  # a weight of 0 (classification-only baseline) spares the decoder's backward pass
        total = total + mask_weight * (bce + dice)
    return total, {"loss": total.item(), "cls": cls.item(), "subtype": sub.item(), "bce": bce.item(), "dice_loss": dice.item()}
