"""Compare two models' predictions on the same cases: DeLong's test and a paired group bootstrap.

DeLong's variance treats images as independent, which overstates the evidence when one patient
contributes several images. The paired bootstrap resamples patient groups (the manifest's
``group_id``) and scores both models on each resample, so its interval of the AUC difference
keeps the grouping and the pairing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from osteolens.data.manifest import LABELS
from osteolens.errors import EvaluationError
from osteolens.evaluation.bootstrap import group_bootstrap_weights, percentile_ci
from osteolens.evaluation.classification import macro_auc, roc_auc
from osteolens.evaluation.delong import delong_test
from osteolens.evaluation.report import PROB_COLUMNS, load_inputs

TASKS = {
    "malignant": (lambda y: y == "malignant", lambda t: t["p_malignant"]),
    "tumour_vs_normal": (lambda y: y != "normal", lambda t: t["p_benign"] + t["p_malignant"]),
    "benign": (lambda y: y == "benign", lambda t: t["p_benign"]),
    "normal": (lambda y: y == "normal", lambda t: t["p_normal"]),
}
#: the mean of the three one-vs-rest AUCs (bootstrap only: DeLong's test is for one AUC)
MACRO = "macro"


def compare_models(predictions_a: str | Path, predictions_b: str | Path, truth: str | Path, task: str = "malignant",
                   splits: str | Path | None = None, split: str | None = None, n_boot: int = 2000, seed: int = 0) -> dict:
    """DeLong test and paired group bootstrap of model A against model B for one binary task.

    Args:
        predictions_a: first predictions CSV.
        predictions_b: second predictions CSV.
        truth: manifest.
        task: ``malignant``, ``tumour_vs_normal``, ``benign`` or ``normal`` (one vs rest), or ``macro``
            (the mean of the normal, benign and malignant one-vs-rest AUCs, compared by the paired
            bootstrap alone: DeLong's fields are ``None``).
        splits: optional splits CSV; with ``split`` restricts the cases.
        split: the split to use.
        n_boot: resamples of patient groups for the paired bootstrap.
        seed: its random seed.

    Returns:
        The :func:`~osteolens.evaluation.delong.delong_test` result plus ``task``, ``n``,
        ``n_groups`` and ``bootstrap``: the difference's 95% percentile interval over group
        resamples (``ci_low``, ``ci_high``) and ``p_value``, twice the smaller share of
        resamples on either side of zero.
    """
    if task not in TASKS and task != MACRO:
        raise EvaluationError(f"unknown task {task!r}; choose from {', '.join([*TASKS, MACRO])}")
    a = load_inputs(predictions_a, truth, splits, split).table
    b = load_inputs(predictions_b, truth, splits, split).table
    both = a.merge(b, on="case_id", suffixes=("_a", "_b"))
    both = both[both["label_a"].notna()]
    if both.empty:
        raise EvaluationError("the two prediction files share no labelled case")
    groups = both["group_id_a"].to_numpy()
    weights = group_bootstrap_weights(groups, n_boot, seed)
    if task == MACRO:
        y = both["label_a"].map(LABELS.index).to_numpy()
        pa, pb = (both[[f"{c}_{m}" for c in PROB_COLUMNS]].to_numpy(float) for m in "ab")
        auc_a, auc_b = macro_auc(y, pa), macro_auc(y, pb)
        result = {"auc_a": auc_a, "auc_b": auc_b, "difference": auc_a - auc_b, "ci_low": None, "ci_high": None,
                  "z": None, "p_value": None}
        with np.errstate(divide="ignore", invalid="ignore"):
            diffs = np.asarray(macro_auc(y, pa, weights) - macro_auc(y, pb, weights), dtype=float)
    else:
        positive, score = TASKS[task]
        y = positive(both["label_a"]).to_numpy()
        sa = score(both.rename(columns=lambda c: c[:-2] if c.endswith("_a") else c)).to_numpy(float)
        sb = score(both.rename(columns=lambda c: c[:-2] if c.endswith("_b") else c)).to_numpy(float)
        result = delong_test(y, sa, sb)
        with np.errstate(divide="ignore", invalid="ignore"):
            diffs = np.asarray(roc_auc(y, sa, weights) - roc_auc(y, sb, weights), dtype=float)
    diffs = diffs[np.isfinite(diffs)]
    low, high = percentile_ci(diffs)
    p_boot = min(1.0, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())) if diffs.size else float("nan")
    bootstrap = {"resampled_unit": "group_id (patient)", "n_boot": n_boot, "seed": seed, "ci_low": low, "ci_high": high,
                 "p_value": float(p_boot)}
    return {"task": task, "n": int(len(both)), "n_groups": int(len(np.unique(groups))),
            **{k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in result.items()}, "bootstrap": bootstrap}
