"""The training configuration: validated on load, saved resolved in the run folder.

Example YAML-free config (JSON)::

    {"manifest": "work/btxrd/manifest.csv", "splits": "work/btxrd/splits.csv", "epochs": 30}

Relative paths are resolved against the config file's folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

from osteolens.errors import OsteolensError, validated
from osteolens.models.multitask import DECODER_WIDTHS
from osteolens.transforms.augment import AugmentConfig


class RunConfig(BaseModel):
    """What every training config shares: its data (``manifest``, ``splits``, ``cache_dir``, ``image_size`` and the
    border crop, declared by each)."""

    @property
    def cache_folder(self) -> Path:
        """Where the preprocessed images are cached: ``cache_dir``, or ``.osteolens_cache`` beside the manifest."""
        return self.cache_dir or (Path(self.manifest).parent / ".osteolens_cache")

    def cached(self, progress=None):
        """The manifest's images and masks as the run sees them (:func:`~osteolens.training.cache.load_cached`)."""
        from osteolens.training.cache import load_cached

        return load_cached(self.manifest, self.image_size, self.cache_folder, progress, self.crop_uniform_border,
                           self.crop_noisy_border)

    def resolved(self, base: Path):
        """A copy with relative paths made absolute against ``base``."""
        def fix(p):
            return None if p is None else (p if p.is_absolute() else (base / p).resolve())

        return self.model_copy(update={"manifest": fix(self.manifest), "splits": fix(self.splits),
                                       "cache_dir": fix(self.cache_dir)})


class TrainConfig(RunConfig):
    """Everything that defines a training run."""

    model_config = ConfigDict(extra="forbid")

    manifest: Path
    splits: Path = Field(description="splits CSV with a 'split' column (train/val/test)")
    model_name: str = "osteolens-radiograph"
    image_size: int = 256
    clinical: bool = True
    crop_uniform_border: float | None = Field(
        None, ge=0.0, lt=1.0, description="cut every image (and its mask) to the box inside its flat border before "
        "resizing: edge rows and columns whose grey spans at most this much of [0, 1] (a black letterbox, a collimated "
        "field saved without its DICOM padding attribute); the exported model asks analysis to do the same. None: "
        "keep whole images")
    crop_noisy_border: bool = Field(
        False, description="with crop_uniform_border, cut noisy borders too: an even border with detector noise, a ramp "
        "or burnt-in text that ends in a straight edge (osteolens.transforms.preprocess.noisy_border_box)")
    epochs: int = 30
    max_minutes: float = 55.0
    fit_epochs_to_budget: bool = Field(
        False, description="after each epoch, shorten the cosine schedule to the epochs that fit in max_minutes at "
        "the slowest epoch's pace so far (never more than 'epochs'), so that the learning rate anneals fully on a "
        "slower machine instead of the run being cut mid-schedule; the summary records how many were planned")
    batch_size: int = 32
    lr: float = 1e-3
    encoder_lr_factor: float = 0.5
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    freeze_blocks: int = 2
    mask_weight: float = 1.0
    subtype_weight: float = 0.3
    class_weight_power: float = 0.5
    early_stopping_patience: int = 6
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    seed: int = 0
    threads: int = 2
    device: Literal["cpu", "cuda"] = Field(
        "cpu", description="where training runs: 'cpu' (the recipe's home: 2 cores) or 'cuda' (a GPU when one is lent); "
        "the run folder, checkpoint and export are the same either way")
    cache_dir: Path | None = None
    limit_train: int | None = None
    limit_val: int | None = None
    target_sensitivity: float = 0.92
    referral_rate: float = 0.10
    pretrained: bool = True
    selection_metric: Literal["macro_auc+dice", "macro_auc"] = "macro_auc+dice"
    precision: Literal["float32", "bfloat16", "auto"] = Field(
        "float32", description="training arithmetic: 'bfloat16' autocasts the forward pass (weights, optimiser, losses, "
        "validation and the exported model stay float32); 1.6-1.9x faster per step on a CPU with AVX-512 BF16 or AMX, "
        "but several times slower than float32 on one without (emulated). 'auto' picks bfloat16 where the hardware "
        "has it natively and float32 elsewhere; the run folder's config records the choice")
    low_res_size: int | None = Field(
        None, description="progressive resizing: the first low_res_epochs train on images (and masks) shrunk to this "
        "size, a multiple of 32 below image_size; steps there cost about (low_res_size / image_size)^2. Validation, "
        "calibration and export stay at image_size")
    low_res_epochs: int = Field(0, ge=0, description="how many of the first epochs train at low_res_size (0: none)")
    lesion_pooling: bool = Field(
        False, description="the class and subtype heads also read the encoder features averaged with the network's "
        "own (detached) tumour-mask probability as weights")
    decoder_widths: tuple[PositiveInt, PositiveInt, PositiveInt, PositiveInt] = Field(
        DECODER_WIDTHS, description="channels of the U-Net decoder's four stages (stride 16, 8, 4, 2); wider costs "
        "CPU time at the fine stages")
    ema_decay: float = Field(
        0.0, ge=0.0, lt=1.0, description="exponential moving average of the weights (and batch-norm statistics) per "
        "step; validation, the saved checkpoint and export use the average. 0 turns it off")

    @field_validator("image_size")
    @classmethod
    def _multiple_of_32(cls, v):
        if v % 32 or v < 64:
            raise ValueError(f"image_size must be a multiple of 32 and at least 64, got {v}")
        return v

    @model_validator(mode="after")
    def _low_res_below_image_size(self):
        if self.low_res_size is not None and (self.low_res_size % 32 or not 64 <= self.low_res_size < self.image_size):
            raise ValueError(f"low_res_size must be a multiple of 32, at least 64 and below image_size "
                             f"({self.image_size}), got {self.low_res_size}")
        if self.low_res_epochs and self.low_res_size is None:
            raise ValueError("low_res_epochs needs low_res_size")
        if self.crop_noisy_border and self.crop_uniform_border is None:
            raise ValueError("crop_noisy_border needs crop_uniform_border (the flat borders are cut first)")
        return self


def load_config(path: str | Path, kind: type[RunConfig] = TrainConfig):
    """Read and validate a JSON training config (of ``kind``: :class:`TrainConfig`, or the refiner's).

    Raises:
        OsteolensError: missing file, bad JSON or an invalid value (named).
    """
    path = Path(path)
    if not path.is_file():
        raise OsteolensError(f"{path}: config not found")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise OsteolensError(f"{path}: not valid JSON ({exc})") from exc
    return validate_config(raw, str(path), kind).resolved(path.parent.resolve())


def validate_config(raw: dict, where: str, kind: type[RunConfig] = TrainConfig):
    """``raw`` as a validated config of ``kind``, or an error that names ``where`` and every invalid field.

    ``where`` says what the values came from: a config file, or a run of a sweep plan.

    Raises:
        OsteolensError: ``WHERE: invalid config: field: problem; ...``.
    """
    return validated(kind, raw, where)


def with_changes(config: dict, changes: dict) -> dict:
    """A raw config with ``changes`` laid over it: a recipe variant, as a sweep plan names it.

    ``augment`` is merged field by field, so that a change names only the augmentations it alters;
    every other field is replaced. Neither argument is modified.

    >>> with_changes({"lr": 0.003, "augment": {"hflip": 0.5}}, {"seed": 1, "augment": {"jpeg": 0.2}})
    {'lr': 0.003, 'augment': {'hflip': 0.5, 'jpeg': 0.2}, 'seed': 1}
    """
    merged = {**config, **changes}
    if "augment" in changes:
        merged["augment"] = {**config.get("augment", {}), **changes["augment"]}
    return merged
