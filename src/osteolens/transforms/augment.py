"""Augmentation suited to radiographs, applied to a batch of images and masks together.

Horizontal flips, small rotations, scaling and shifts (one affine warp for image and mask, so
they stay aligned), brightness, contrast and gamma, and CLAHE. Nothing that breaks anatomy:
no vertical flips, no elastic warps, no large rotations.

The random draws live in :class:`RadiographAugment`; the transforms themselves are pure
functions of their parameters.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch.nn import functional as F


class AugmentConfig(BaseModel):
    """Strength of each augmentation (0 turns one off)."""

    model_config = ConfigDict(extra="forbid")

    hflip: float = 0.5
    rotate_deg: float = 10.0
    scale: float = 0.10
    translate: float = 0.05
    brightness: float = 0.10
    contrast: float = 0.15
    gamma: float = 0.20
    clahe: float = 0.25


def clahe(img: np.ndarray, clip_limit: float = 2.0, tiles: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of a uint8 grey image."""
    import cv2

    return cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tiles, tiles)).apply(img)


def affine(images: torch.Tensor, masks: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor,
           shift: torch.Tensor, flip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp ``(B, 1, H, W)`` images and masks with per-sample rotation (radians), scale, shift, flip."""
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    sign = torch.where(flip, -1.0, 1.0)
    theta = torch.stack([
        torch.stack([cos * sign, -sin, shift[:, 0]], dim=1),
        torch.stack([sin * sign, cos, shift[:, 1]], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    masks = F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return images, (masks > 0.5).float()


def intensity(images: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Per-sample gamma, contrast (about the image mean) and brightness on ``[0, 1]`` images."""
    x = images.clamp(0, 1) ** gamma.view(-1, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast.view(-1, 1, 1, 1) + mean + brightness.view(-1, 1, 1, 1)
    return x.clamp(0, 1)


class RadiographAugment:
    """Draws the random parameters and applies the transforms to a batch.

    Args:
        config: strengths.
        seed: seeds the generator (one per training run, so runs are reproducible).
    """

    def __init__(self, config: AugmentConfig, seed: int = 0):
        self.config = config
        self.rng = np.random.default_rng(seed)

    def __call__(self, images_u8: np.ndarray, masks_u8: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 ``(B, H, W)`` images and masks -> float ``(B, 1, H, W)`` in ``[0, 1]``, augmented."""
        c, rng = self.config, self.rng
        b = len(images_u8)
        images_u8 = images_u8.copy()
        if c.clahe > 0:
            for i in np.flatnonzero(rng.random(b) < c.clahe):
                images_u8[i] = clahe(images_u8[i])
        x = torch.from_numpy(images_u8).float().div_(255).unsqueeze(1)
        m = torch.from_numpy(masks_u8 > 0).float().unsqueeze(1)

        def u(width):
            return torch.from_numpy(rng.uniform(-width, width, b)).float()

        x, m = affine(
            x, m,
            angle=u(math.radians(c.rotate_deg)),
            scale=1 + u(c.scale),
            shift=torch.stack([u(c.translate) * 2, u(c.translate) * 2], dim=1),
            flip=torch.from_numpy(rng.random(b) < c.hflip),
        )
        x = intensity(x, brightness=u(c.brightness), contrast=1 + u(c.contrast), gamma=torch.exp(u(c.gamma)))
        return x, m
