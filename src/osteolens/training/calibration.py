"""Post-hoc calibration and decision thresholds, all chosen on the validation split.

- temperature scaling of the class logits (Guo et al. 2017);
- the "malignant" threshold reaching a target sensitivity;
- the uncertainty threshold above which a case is "indeterminate" (refer);
- the mask threshold maximising validation Dice.
"""

from __future__ import annotations

import numpy as np

from osteolens.errors import OsteolensError
from osteolens.evaluation.classification import threshold_for_sensitivity


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature minimising the negative log-likelihood of ``softmax(logits / T)``."""
    import torch
    from torch.nn import functional as F

    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.exp().item())


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def normalised_entropy(probs: np.ndarray) -> np.ndarray:
    """Predictive entropy divided by its maximum, log(K): 0 certain, 1 uniform."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1)
    return -(p * np.log(p)).sum(axis=-1) / np.log(p.shape[-1])


def malignant_threshold(labels: np.ndarray, p_malignant: np.ndarray, target_sensitivity: float) -> float:
    """Highest threshold on p(malignant) whose validation sensitivity reaches the target.

    Raises:
        OsteolensError: no malignant image among ``labels``: no threshold has a sensitivity.
    """
    if not (np.asarray(labels) == 2).any():
        raise OsteolensError(f"none of the {len(labels)} calibration images is malignant, so no threshold for 'malignant' "
                             "can be chosen; calibrate on a set that includes malignant images")
    return threshold_for_sensitivity(labels == 2, p_malignant, target_sensitivity)


def uncertainty_threshold(uncertainty: np.ndarray, referral_rate: float) -> float:
    """Uncertainty above which the validation cases' top ``referral_rate`` share lies."""
    return float(np.quantile(uncertainty, 1 - referral_rate))


def mean_dice(mask_probs: np.ndarray, masks: np.ndarray, threshold: float) -> float:
    """Mean Dice of ``mask_probs >= threshold`` against ``masks`` over images (an image empty in both scores 1)."""
    t = masks.reshape(len(masks), -1) > 0
    p = mask_probs.reshape(len(mask_probs), -1) >= threshold
    denom = p.sum(1) + t.sum(1)
    return float(np.where(denom > 0, 2 * (p & t).sum(1) / np.maximum(denom, 1), 1.0).mean())


def best_mask_threshold(mask_probs: np.ndarray, masks: np.ndarray, candidates=(0.3, 0.4, 0.5, 0.6, 0.7)) -> tuple[float, float]:
    """Mask threshold with the best mean Dice over validation tumour images; returns (threshold, dice)."""
    best = (0.5, -1.0)
    for c in candidates:
        dice = mean_dice(mask_probs, masks, c)
        if dice > best[1]:
            best = (float(c), dice)
    return best
