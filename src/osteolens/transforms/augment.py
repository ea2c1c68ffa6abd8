"""Augmentation suited to radiographs, applied to a batch of images and masks together.

Horizontal flips, small rotations, scaling and shifts (one affine warp for image and mask, so
they stay aligned), brightness, contrast and gamma, and CLAHE. Nothing that breaks anatomy:
no vertical flips, no elastic warps, no large rotations.

Optionally, a share of the batch is zoomed in (``lesion_zoom``): tumour images around their
lesion, so that its box fills ``1 / lesion_context`` of the view, other images around a random
point by the same range of factors. It is the same affine warp with a larger scale, and it
teaches the network lesions at the size a second, zoomed-in look at inference shows them.

Optionally (``jpeg``, ``downscale``, ``blur``, ``noise``: the share of images each touches), the
ways hospital radiographs differ from the training images in storage and acquisition: lossy
JPEG re-encoding (quality 30-90), a resolution loss (down to 0.4-0.8 of the side and back), a
Gaussian blur (sigma 0.5-1.5 px) and Gaussian noise (sigma 0.005-0.04 of the grey range).
``benchmarks/radiograph_robustness.py`` measured the shipped model losing most on exactly these.

Optionally (``lesion_erase``: the share of tumour images with a mask), counterfactual normals: the
lesion and a margin around it are filled from the bone around it (:func:`erase_lesion`) and the image
is trained as normal, with an empty mask. In BTXRD the rest of a tumour image tells it from a normal
one almost as well as the lesion does (``benchmarks/radiograph_robustness.py``, ``lesion_erased``);
such a copy teaches that without the lesion the image is normal. Alone, it also teaches that a filled
patch means normal; ``lesion_decoy`` (the share of all images, any label, given a patch of the same kind
away from any lesion) takes that cue away. The trainer applies both (:func:`counterfactual_normals`),
since they change the labels.

The random draws live in :class:`RadiographAugment`; the transforms themselves are pure
functions of their parameters.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch.nn import functional as F

from osteolens.transforms.views import inside_image, zoom_view


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
    lesion_zoom: float = 0.0
    lesion_context: tuple[float, float] = (2.5, 5.0)
    max_zoom: float = 4.0
    lesion_zoom_classes: bool = True  # False: zoomed views train the mask only, not the class and subtype heads
    jpeg: float = 0.0
    downscale: float = 0.0
    blur: float = 0.0
    noise: float = 0.0
    lesion_erase: float = 0.0
    lesion_erase_margin_px: int = 12
    lesion_decoy: float = 0.0  # share of the images not erased given a filled patch away from any lesion, label unchanged


def clahe(img: np.ndarray, clip_limit: float = 2.0, tiles: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of a uint8 grey image."""
    import cv2

    return cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tiles, tiles)).apply(img)


def jpeg_reencode(img: np.ndarray, quality: int) -> np.ndarray:
    """A uint8 grey image through lossy JPEG at ``quality`` (1-100) and back."""
    import cv2

    _, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def resolution_loss(img: np.ndarray, factor: float) -> np.ndarray:
    """A uint8 grey image shrunk to ``factor`` of its side (area) and enlarged back (linear)."""
    import cv2

    h, w = img.shape
    small = cv2.resize(img, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """A uint8 grey image blurred with a Gaussian of ``sigma`` pixels."""
    import cv2

    return cv2.GaussianBlur(img, (0, 0), sigmaX=float(sigma))


def erase_lesion(img: np.ndarray, mask: np.ndarray, margin_px: int) -> np.ndarray:
    """A uint8 grey image with ``mask`` and ``margin_px`` around it filled from its surroundings (Telea inpainting)."""
    import cv2

    size = 2 * margin_px + 1
    region = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    return cv2.inpaint(img, region, 5, cv2.INPAINT_TELEA)


def counterfactual_normals(images_u8: np.ndarray, masks_u8: np.ndarray, labels: np.ndarray, subtypes: np.ndarray,
                           share: float, margin_px: int, rng: np.random.Generator, normal: int = 0,
                           decoy_share: float = 0.0):
    """Copies of a batch where a ``share`` of the tumour images with a mask have their lesion erased
    (:func:`erase_lesion`) and become normal: label ``normal``, no subtype, an empty mask.

    With ``decoy_share``, that share of the other images (any label) get a decoy instead: one of the batch's
    lesion shapes, moved clear of the image's own lesion to grey like the lesion's (bone where it was on
    bone), filled the same way, label and mask unchanged. Patches then appear on images of every label, so
    a filled patch says little by itself; at ``decoy_share`` 1 it says nothing, and every image has one.
    Returns ``(images, masks, labels, subtypes)``; no draws for a share of 0.
    """
    n = len(labels)
    has_lesion = masks_u8.reshape(n, -1).any(axis=1)
    erase = np.zeros(n, bool)
    if share > 0:
        erase = (rng.random(n) < share) & (labels != normal) & (labels >= 0) & has_lesion
    decoy = np.zeros(n, bool)
    if decoy_share > 0 and has_lesion.any():
        decoy = (rng.random(n) < decoy_share) & ~erase  # at most one patch an image
    if not (erase.any() or decoy.any()):
        return images_u8, masks_u8, labels, subtypes
    sources = np.flatnonzero(has_lesion)
    images_u8, out_masks, labels, subtypes = images_u8.copy(), masks_u8.copy(), labels.copy(), subtypes.copy()
    for i in np.flatnonzero(decoy):
        k = sources[rng.integers(len(sources))]
        moved = _decoy_place(masks_u8[k], _grey_level(images_u8[k], masks_u8[k]), images_u8[i], masks_u8[i],
                             margin_px, rng)
        if moved is not None:
            images_u8[i] = erase_lesion(images_u8[i], moved, margin_px)
    for i in np.flatnonzero(erase):
        images_u8[i] = erase_lesion(images_u8[i], masks_u8[i], margin_px)
    out_masks[erase], labels[erase], subtypes[erase] = 0, normal, -1
    return images_u8, out_masks, labels, subtypes


def _decoy_place(shape: np.ndarray, level: float, img: np.ndarray, own: np.ndarray, margin_px: int,
                 rng: np.random.Generator, tries: int = 20) -> np.ndarray | None:
    """``shape`` moved to lie wholly inside ``img`` with its margin clear of ``own`` (the image's lesion): of
    ``tries`` random shifts, the one whose grey under the shape sits at the percentile ``level`` of the image
    closest (bone where the lesion was on bone). None when no shift fits."""
    ys, xs = np.nonzero(shape)
    h, w = shape.shape
    gap = 2 * margin_px
    lo_y, hi_y, lo_x, hi_x = margin_px - ys.min(), h - margin_px - ys.max(), margin_px - xs.min(), w - margin_px - xs.max()
    if lo_y >= hi_y or lo_x >= hi_x:
        return None
    own_y, own_x = np.nonzero(own)
    ranked = np.sort(img, axis=None)
    best, best_gap = None, np.inf
    for _ in range(tries):
        ty, tx = ys + rng.integers(lo_y, hi_y), xs + rng.integers(lo_x, hi_x)
        if len(own_y) and (abs(own_y.mean() - ty.mean()) < (np.ptp(own_y) + np.ptp(ty)) / 2 + gap
                           and abs(own_x.mean() - tx.mean()) < (np.ptp(own_x) + np.ptp(tx)) / 2 + gap):
            continue  # the boxes, margins included, would touch
        place_level = np.searchsorted(ranked, img[ty, tx].mean()) / ranked.size
        if abs(place_level - level) < best_gap:
            best, best_gap = (ty, tx), abs(place_level - level)
    if best is None:
        return None
    moved = np.zeros_like(shape)
    moved[best] = 1
    return moved


def _grey_level(img: np.ndarray, region: np.ndarray) -> float:
    """Where the mean grey under ``region`` falls among the image's pixels (0-1)."""
    return float(np.searchsorted(np.sort(img, axis=None), img[region > 0].mean()) / img.size)


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


def lesion_zoom_params(masks: np.ndarray, chosen: np.ndarray, rng: np.random.Generator, context: tuple[float, float],
                       max_zoom: float) -> tuple[np.ndarray, np.ndarray]:
    """Zoom factors and view centres (:func:`zoom_view`) for a batch of ``(B, H, W)`` masks.

    Samples not ``chosen`` get zoom 1 and centre 0. A chosen sample with a lesion is framed
    around its mask's bounding box with a context drawn from ``context``; one without a lesion
    is zoomed by a factor drawn from 2 to ``max_zoom`` and centred at random.
    """
    b, h, w = masks.shape
    zoom, centre = np.ones(b), np.zeros((b, 2))
    for i in np.flatnonzero(chosen):
        k = rng.uniform(*context)
        ys, xs = np.nonzero(masks[i])
        if len(xs):
            zoom[i], centre[i] = zoom_view((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), (h, w), k, max_zoom)
        else:
            zoom[i] = np.clip(rng.uniform(min(2.0, max_zoom), max_zoom), 1.0, max_zoom)
            centre[i] = inside_image(rng.uniform(-1, 1, 2), zoom[i])
    return zoom, centre


class RadiographAugment:
    """Draws the random parameters and applies the transforms to a batch.

    Args:
        config: strengths.
        seed: seeds the generator (one per training run, so runs are reproducible).
    """

    def __init__(self, config: AugmentConfig, seed: int = 0):
        self.config = config
        self.rng = np.random.default_rng(seed)

    def __call__(self, images_u8: np.ndarray, masks_u8: np.ndarray, return_zoomed: bool = False,
                 device: torch.device | str = "cpu"):
        """uint8 ``(B, H, W)`` images and masks -> float ``(B, 1, H, W)`` in ``[0, 1]``, augmented.

        With ``return_zoomed``, also a ``(B,)`` boolean tensor: which samples were zoomed in. The
        warps run on ``device`` (the random draws do not depend on it).
        """
        c, rng = self.config, self.rng
        b = len(images_u8)
        images_u8 = images_u8.copy()
        if c.clahe > 0:
            for i in np.flatnonzero(rng.random(b) < c.clahe):
                images_u8[i] = clahe(images_u8[i])
        # acquisition and storage; no draws when off, so older configs replay exactly
        for share, transform, low, high in ((c.downscale, resolution_loss, 0.4, 0.8), (c.blur, gaussian_blur, 0.5, 1.5),
                                            (c.jpeg, jpeg_reencode, 30, 90)):
            if share > 0:
                for i in np.flatnonzero(rng.random(b) < share):
                    images_u8[i] = transform(images_u8[i], rng.uniform(low, high))
        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a).to(device)

        x = tensor(images_u8).float().div_(255).unsqueeze(1)
        m = tensor(masks_u8 > 0).float().unsqueeze(1)

        def u(width):
            return tensor(rng.uniform(-width, width, b)).float()

        zoom, centre = np.ones(b), np.zeros((b, 2))
        if c.lesion_zoom > 0:
            zoom, centre = lesion_zoom_params(masks_u8, rng.random(b) < c.lesion_zoom, rng, c.lesion_context, c.max_zoom)
        x, m = affine(
            x, m,
            angle=u(math.radians(c.rotate_deg)),
            scale=(1 + u(c.scale)) * tensor(zoom).float(),
            shift=torch.stack([u(c.translate) * 2, u(c.translate) * 2], dim=1) + tensor(centre).float(),
            flip=tensor(rng.random(b) < c.hflip),
        )
        x = intensity(x, brightness=u(c.brightness), contrast=1 + u(c.contrast), gamma=torch.exp(u(c.gamma)))
        if c.noise > 0:
            sigma = np.where(rng.random(b) < c.noise, rng.uniform(0.005, 0.04, b), 0.0)
            noise = tensor(rng.standard_normal(x.shape).astype(np.float32))
            x = (x + noise * tensor(sigma).float().view(-1, 1, 1, 1)).clamp(0, 1)
        return (x, m, tensor(zoom > 1)) if return_zoomed else (x, m)
