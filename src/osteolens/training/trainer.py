"""Train the radiograph model on the CPU (or a GPU when ``device`` is ``cuda``): ``train(config, run_dir)``.

Stages talk through files: the run folder receives ``config.json`` (resolved), ``metrics.csv``
(one row per epoch), ``best.pt`` (the best checkpoint on the validation split),
``calibration.json`` (temperature and thresholds chosen on validation) and ``summary.json``.
"""

from __future__ import annotations

import csv
import json
import math
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from osteolens import __version__
from osteolens.data.clinical import N_CLINICAL
from osteolens.data.manifest import LABELS
from osteolens.data.splits import load_splits
from osteolens.errors import OsteolensError
from osteolens.evaluation.calibration import expected_calibration_error
from osteolens.evaluation.classification import macro_auc, roc_auc
from osteolens.models.multitask import RadiographNet
from osteolens.training import calibration as cal
from osteolens.training.config import TrainConfig
from osteolens.training.losses import multitask_loss
from osteolens.transforms.augment import RadiographAugment, counterfactual_normals
from osteolens.transforms.preprocess import IMAGENET_MEAN, IMAGENET_STD


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def start_run(cfg, run_dir: str | Path) -> Path:
    """Create a run folder, save the resolved config in it, and set the run's threads and seeds."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(cfg.model_dump_json(indent=2) + "\n")
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    return run_dir


def to_input(x01: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` grey in [0, 1] -> ``(B, 3, H, W)`` ImageNet-normalised, channels-last."""
    mean = torch.tensor(IMAGENET_MEAN, device=x01.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x01.device).view(1, 3, 1, 1)
    return ((x01.expand(-1, 3, -1, -1) - mean) / std).contiguous(memory_format=torch.channels_last)


def build_model(cfg: TrainConfig) -> RadiographNet:
    """The network of a config, with the early encoder layers frozen as configured."""
    model = RadiographNet(cfg.image_size, n_clinical=N_CLINICAL if cfg.clinical else 0, pretrained=cfg.pretrained,
                          lesion_pooling=cfg.lesion_pooling, decoder_widths=cfg.decoder_widths)
    for module in frozen_modules(model, cfg.freeze_blocks):
        for p in module.parameters():
            p.requires_grad = False
    return model.to(memory_format=torch.channels_last)


def frozen_modules(model: RadiographNet, n_blocks: int) -> list[torch.nn.Module]:
    if n_blocks <= 0:
        return []
    return [model.encoder.stem, *model.encoder.blocks[:n_blocks]]


def train_mode(model: RadiographNet, cfg: TrainConfig) -> None:
    """Training mode, except the frozen layers, whose batch-norm statistics stay ImageNet's."""
    model.train()
    for m in frozen_modules(model, cfg.freeze_blocks):
        m.eval()


def train_step(model: RadiographNet, opt: torch.optim.Optimizer, x01: torch.Tensor, clinical: torch.Tensor | None,
               labels: torch.Tensor, subtypes: torch.Tensor, masks: torch.Tensor, class_weights: torch.Tensor,
               cfg: TrainConfig, class_keep: torch.Tensor | None = None) -> dict:
    """One optimiser step on a batch (forward in ``cfg.precision``, loss and update in float32); the loss parts."""
    with torch.autocast(x01.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bfloat16"):
        out = model(to_input(x01), clinical)
    out = {k: v.float() for k, v in out.items()}
    loss, parts = multitask_loss(out, labels, subtypes, masks, class_weights, cfg.mask_weight, cfg.subtype_weight,
                                 class_keep)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return parts


@torch.no_grad()
def predict_cached(model: RadiographNet, images_u8: np.ndarray, clinical: np.ndarray | None, tta: bool = True,
                   batch_size: int = 64) -> dict[str, np.ndarray]:
    """Class and subtype logits, mask probabilities and class maps (each the mean over flip TTA) for cached images.

    Runs where the model's weights are; returns NumPy arrays.
    """
    model.eval()
    device = next(model.parameters()).device
    outs = {"class_logits": [], "subtype_logits": [], "mask_prob": [], "cam": []}
    for start in range(0, len(images_u8), batch_size):
        x = torch.from_numpy(images_u8[start:start + batch_size]).to(device).float().div_(255).unsqueeze(1)
        c = torch.from_numpy(clinical[start:start + batch_size]).to(device) if clinical is not None else None
        views = [x, x.flip(-1)] if tta else [x]
        cl, st, mp, cam = 0, 0, 0, 0
        for i, v in enumerate(views):
            o = model(to_input(v), c)
            m = torch.sigmoid(o["mask_logits"])
            cl = cl + o["class_logits"]
            st = st + o["subtype_logits"]
            mp = mp + (m.flip(-1) if i == 1 else m)
            cam = cam + (o["cam"].flip(-1) if i == 1 else o["cam"])
        n = len(views)
        outs["class_logits"].append((cl / n).cpu().numpy())
        outs["subtype_logits"].append((st / n).cpu().numpy())
        outs["mask_prob"].append((mp / n)[:, 0].cpu().numpy())
        outs["cam"].append((cam / n).cpu().numpy())
    return {k: np.concatenate(v) for k, v in outs.items()}


def shrink_batch(x01: torch.Tensor, masks: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and masks ``(B, 1, S, S)`` shrunk to ``size`` (antialiased bilinear; the masks become soft targets)."""
    def shrink(t):
        return torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)

    return shrink(x01).clamp_(0, 1), shrink(masks).clamp_(0, 1)


def _val_metrics(pred: dict, labels: np.ndarray, masks: np.ndarray | None, mask_threshold: float = 0.5) -> dict:
    probs = cal.softmax(pred["class_logits"])
    tumour = labels > 0
    if masks is None:
        dice = None
    else:
        dice = cal.mean_dice(pred["mask_prob"][tumour], masks[tumour], mask_threshold) if tumour.any() else float("nan")
    return {
        "val_macro_auc": float(macro_auc(labels, probs)),
        "val_auc_malignant": float(roc_auc(labels == 2, probs[:, 2])),
        "val_auc_tumour": float(roc_auc(labels > 0, probs[:, 1] + probs[:, 2])),
        "val_accuracy": float((probs.argmax(1) == labels).mean()),
        "val_dice": dice,
    }


def case_splits(cfg: TrainConfig, case_ids: np.ndarray) -> np.ndarray:
    """Each case's split name in ``cfg.splits`` (``''`` for a case the file does not list)."""
    table = load_splits(cfg.splits)
    if "split" not in table.columns:
        raise OsteolensError(f"{cfg.splits}: training needs a 'split' column with train and val")
    split_of = dict(zip(table["case_id"].astype(str), table["split"]))
    return np.array([split_of.get(c, "") for c in case_ids])


def split_indices(cfg: TrainConfig, case_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    splits = case_splits(cfg, case_ids)
    rng = np.random.default_rng(cfg.seed)
    train = np.flatnonzero(splits == "train")
    val = np.flatnonzero(splits == "val")
    if len(train) == 0 or len(val) == 0:
        raise OsteolensError(f"{cfg.splits}: needs cases in both 'train' and 'val' (found {len(train)} and {len(val)})")
    if cfg.limit_train:
        train = np.sort(rng.choice(train, min(cfg.limit_train, len(train)), replace=False))
    if cfg.limit_val:
        val = np.sort(rng.choice(val, min(cfg.limit_val, len(val)), replace=False))
    return train, val


#: room left when fitting the schedule: an epoch may run a little slower than the slowest so far
EPOCH_PACE_MARGIN = 1.05


def epochs_for_budget(cfg: TrainConfig, epochs_done: int, minutes_used: float, minutes_per_epoch: float) -> int:
    """Epochs of the whole run that fit in ``cfg.max_minutes``: those done plus those the time left allows.

    Example:
        >>> from osteolens.training.config import TrainConfig
        >>> cfg = TrainConfig(manifest="m.csv", splits="s.csv", epochs=16, max_minutes=57)
        >>> epochs_for_budget(cfg, 1, minutes_used=10.5, minutes_per_epoch=9.5)  # a slow CPU
        5
        >>> epochs_for_budget(cfg, 1, minutes_used=3.5, minutes_per_epoch=3.2)  # fast enough for all 16
        16
    """
    room = max(cfg.max_minutes - minutes_used, 0.0)
    return max(1, min(cfg.epochs, epochs_done + int(room // (minutes_per_epoch * EPOCH_PACE_MARGIN))))


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / max(warmup, 1)
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def train(cfg: TrainConfig, run_dir: str | Path, show_progress: bool = True) -> dict:
    """Train, pick the best epoch on validation, calibrate, and write the run folder.

    Args:
        cfg: the validated config (paths absolute).
        run_dir: the run folder (created).
        show_progress: draw Rich progress bars.

    Returns:
        The run summary (also in ``summary.json``).
    """
    device = _device(cfg)
    cfg = cfg.model_copy(update={"precision": resolve_precision(cfg.precision, device)})
    run_dir = start_run(cfg, run_dir)
    started = time.perf_counter()
    data = cfg.cached()
    train_idx, val_idx = split_indices(cfg, data.case_ids)
    tr, va = data.take(train_idx), data.take(val_idx)
    model = build_model(cfg).to(device)
    averaged = _weight_average(model, cfg.ema_decay)
    kept = averaged.module if averaged is not None else model  # the weights validated, saved and exported
    counts = np.bincount(tr.labels[tr.labels >= 0], minlength=3).astype(float)
    weights = (np.maximum(counts, 1) / counts.sum()) ** (-cfg.class_weight_power)
    class_weights = torch.tensor(weights / weights.mean(), dtype=torch.float32, device=device)
    enc = [p for p in model.encoder.parameters() if p.requires_grad]
    rest = [p for n, p in model.named_parameters() if not n.startswith("encoder.") and p.requires_grad]
    opt = torch.optim.AdamW([{"params": enc, "lr": cfg.lr * cfg.encoder_lr_factor}, {"params": rest, "lr": cfg.lr}],
                            weight_decay=cfg.weight_decay)
    base_lrs = [g["lr"] for g in opt.param_groups]
    steps_per_epoch = max(1, math.ceil(len(tr.labels) / cfg.batch_size))
    total_steps = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    augment = RadiographAugment(cfg.augment, seed=cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    best, best_epoch, stale, step = -np.inf, -1, 0, 0
    history = []
    metrics_path = run_dir / "metrics.csv"
    metrics_path.unlink(missing_ok=True)  # a rerun into the same folder starts a fresh log
    progress = progress_bar(show_progress)
    stop_reason = "epochs done"
    planned_epochs = cfg.epochs
    with progress:
        epoch_task = progress.add_task("epochs", total=cfg.epochs)
        for epoch in range(cfg.epochs):
            t0 = time.perf_counter()
            size = cfg.low_res_size if epoch < cfg.low_res_epochs else cfg.image_size
            train_mode(model, cfg)
            order = rng.permutation(len(tr.labels))
            sums: dict[str, float] = {}
            batch_task = progress.add_task(f"epoch {epoch + 1}", total=steps_per_epoch)
            for b in range(steps_per_epoch):
                idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                if len(idx) < 2:
                    continue
                images, masks, labels, subtypes = counterfactual_normals(
                    tr.images[idx], tr.masks[idx], tr.labels[idx], tr.subtypes[idx], cfg.augment.lesion_erase,
                    cfg.augment.lesion_erase_margin_px, augment.rng, normal=LABELS.index("normal"),
                    decoy_share=cfg.augment.lesion_decoy)
                x, m, zoomed = augment(images, masks, return_zoomed=True, device=device)
                if size != cfg.image_size:
                    x, m = shrink_batch(x, m, size)
                class_keep = None if cfg.augment.lesion_zoom_classes else ~zoomed
                clin = torch.from_numpy(tr.clinical[idx]).to(device) if cfg.clinical else None
                for g, lr in zip(opt.param_groups, base_lrs):
                    g["lr"] = lr * _lr_factor(step, total_steps, warmup)
                parts = train_step(model, opt, x, clin, torch.from_numpy(labels).to(device),
                                   torch.from_numpy(subtypes).to(device), m, class_weights, cfg, class_keep)
                if averaged is not None:
                    averaged.update_parameters(model)
                step += 1
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                progress.update(batch_task, advance=1)
            progress.remove_task(batch_task)
            pred = predict_cached(kept, va.images, va.clinical if cfg.clinical else None, tta=False)
            row = {"epoch": epoch + 1, "train_size": size,
                   **{f"train_{k}": v / steps_per_epoch for k, v in sums.items()},
                   **_val_metrics(pred, va.labels, va.masks), "lr": opt.param_groups[1]["lr"],
                   "seconds": round(time.perf_counter() - t0, 1)}
            score = row["val_macro_auc"] + (row["val_dice"] if cfg.selection_metric == "macro_auc+dice" else 0.0)
            row["selection_score"] = score
            history.append(row)
            append_csv(metrics_path, row)
            if score > best:
                best, best_epoch, stale = score, epoch + 1, 0
                torch.save(kept.state_dict(), run_dir / "best.pt")
            else:
                stale += 1
            progress.update(epoch_task, advance=1, description=f"epochs (val macro AUC {row['val_macro_auc']:.3f}, Dice {row['val_dice']:.3f})")
            elapsed = (time.perf_counter() - started) / 60
            per_epoch = row["seconds"] / 60
            if cfg.fit_epochs_to_budget:  # shorten (never lengthen) the schedule to what the slowest pace yet allows
                slowest = max(r["seconds"] for r in history) / 60
                fitted = epochs_for_budget(cfg, epoch + 1, elapsed, slowest)
                if fitted < planned_epochs:
                    planned_epochs, total_steps = fitted, steps_per_epoch * fitted
                    progress.update(epoch_task, total=planned_epochs)
            if epoch + 1 >= planned_epochs:
                stop_reason = "epochs done" if planned_epochs == cfg.epochs else \
                    f"epochs done: {planned_epochs} of {cfg.epochs} fitted to the {cfg.max_minutes}-minute budget"
                break
            if stale >= cfg.early_stopping_patience:
                stop_reason = f"early stopping: no better validation score for {stale} epochs"
                break
            if elapsed + per_epoch > cfg.max_minutes:
                stop_reason = f"time budget: {elapsed:.1f} of {cfg.max_minutes} minutes used"
                break
    model.load_state_dict(torch.load(run_dir / "best.pt", map_location=device, weights_only=True))
    calibration = calibrate(model, va, cfg)
    (run_dir / "calibration.json").write_text(json.dumps(calibration, indent=2) + "\n")
    summary = {
        "osteolens": __version__,
        "model_name": cfg.model_name,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "stop_reason": stop_reason,
        "train_minutes": round((time.perf_counter() - started) / 60, 2),
        "planned_epochs": planned_epochs,
        "config_epochs": cfg.epochs,
        "schedule_fraction_run": round(step / total_steps, 4),
        "final_lr_factor": round(_lr_factor(max(step - 1, 0), total_steps, warmup), 4),
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
        "class_weights": class_weights.tolist(),
        "best_val": history[best_epoch - 1] if best_epoch > 0 else None,
        "calibration": calibration,
        "torch": torch.__version__,
        "threads": cfg.threads,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": cfg.precision,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "cuda":
        if not torch.cuda.is_available():
            raise OsteolensError("config asks for device 'cuda' but PyTorch sees no GPU here; use \"device\": \"cpu\"")
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    return torch.device(cfg.device)


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively (AVX-512 BF16 or AMX on a CPU; a GPU that supports it).

    Elsewhere PyTorch emulates bfloat16, and an autocast training step runs several times slower
    than in float32 (8 times, measured on a 2-core AMD EPYC with AVX2 only).
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(requested: str, device: torch.device) -> str:
    """The arithmetic a run uses: ``auto`` becomes bfloat16 where :func:`native_bfloat16`, else float32.

    Asking for bfloat16 where it is emulated is allowed (same arithmetic as native bfloat16, only
    slower) but warned about.
    """
    native = native_bfloat16(device)
    if requested == "auto":
        return "bfloat16" if native else "float32"
    if requested == "bfloat16" and not native:
        warnings.warn(f"precision 'bfloat16' on a {device.type} without native bfloat16 "
                      f"({torch.backends.cpu.get_cpu_capability() if device.type == 'cpu' else 'GPU'}): PyTorch emulates "
                      "it and each step runs several times slower than float32; use \"precision\": \"auto\"",
                      stacklevel=3)
    return requested


def _weight_average(model: RadiographNet, decay: float):
    """PyTorch's exponential moving average of the weights and buffers (``None`` when ``decay`` is 0)."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def calibrate(model: RadiographNet, va, cfg: TrainConfig) -> dict:
    """Temperature, malignant threshold, uncertainty threshold and mask threshold on validation."""
    pred = predict_cached(model, va.images, va.clinical if cfg.clinical else None, tta=True)
    return calibration_from_predictions(pred, va.labels, va.masks, cfg)


def calibration_from_predictions(pred: dict, labels: np.ndarray, masks: np.ndarray | None, cfg: TrainConfig,
                                 mask_threshold: float | None = None) -> dict:
    """:func:`calibrate` from flip-TTA predictions already made (by PyTorch or by an ONNX model).

    Args:
        pred: ``class_logits`` ``(N, 3)`` and ``mask_prob`` ``(N, S, S)`` of the validation images.
        labels: their classes; masks: their tumour masks (``None``: no masks, so the mask threshold
            is not fitted and no Dice is reported).
        cfg: the run's config (target sensitivity, referral rate).
        mask_threshold: keep this mask threshold instead of fitting one (required without masks).
    """
    temperature = cal.fit_temperature(pred["class_logits"], labels)
    probs = cal.softmax(pred["class_logits"], temperature)
    raw = cal.softmax(pred["class_logits"])
    uncertainty = cal.normalised_entropy(probs)
    u_thr = cal.uncertainty_threshold(uncertainty, cfg.referral_rate)
    m_thr = cal.malignant_threshold(labels, probs[:, 2], cfg.target_sensitivity)
    if mask_threshold is not None:
        mask_thr = float(mask_threshold)
    elif masks is None:
        raise OsteolensError("fitting the mask threshold needs the images' masks; without masks give the threshold to keep")
    else:
        mask_thr, _ = cal.best_mask_threshold(pred["mask_prob"][labels > 0], masks[labels > 0])
    metrics = _val_metrics({**pred, "class_logits": pred["class_logits"] / temperature}, labels, masks, mask_thr)
    decided = np.where(probs[:, 2] >= m_thr, 2, probs[:, :2].argmax(1))
    kept = uncertainty <= u_thr
    return {
        "temperature": temperature,
        "ece_before": float(expected_calibration_error(labels, raw)),
        "ece_after": float(expected_calibration_error(labels, probs)),
        "malignant_threshold": m_thr,
        "malignant_target_sensitivity": cfg.target_sensitivity,
        "val_malignant_sensitivity": float((probs[labels == 2, 2] >= m_thr).mean()),
        "val_malignant_specificity": float((probs[labels != 2, 2] < m_thr).mean()),
        "uncertainty": "normalised predictive entropy of the flip-TTA mean logits after temperature",
        "uncertainty_threshold": u_thr,
        "referral_rate": cfg.referral_rate,
        "val_accuracy_kept": float((decided[kept] == labels[kept]).mean()) if kept.any() else None,
        "val_accuracy_referred": float((decided[~kept] == labels[~kept]).mean()) if (~kept).any() else None,
        "mask_threshold": mask_thr,
        "val_dice_at_mask_threshold": metrics["val_dice"],
        **metrics,
    }


def append_csv(path: Path, row: dict) -> None:
    """Append ``row`` to a CSV file, writing its header first when the file is new."""
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def progress_bar(show: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), disable=not show, transient=False)
