"""Compare two models' predictions on the same cases with DeLong's test."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from osteolens.errors import EvaluationError
from osteolens.evaluation.delong import delong_test
from osteolens.evaluation.report import load_inputs

TASKS = {
    "malignant": (lambda y: y == "malignant", lambda t: t["p_malignant"]),
    "tumour_vs_normal": (lambda y: y != "normal", lambda t: t["p_benign"] + t["p_malignant"]),
    "benign": (lambda y: y == "benign", lambda t: t["p_benign"]),
    "normal": (lambda y: y == "normal", lambda t: t["p_normal"]),
}


def compare_models(predictions_a: str | Path, predictions_b: str | Path, truth: str | Path, task: str = "malignant",
                   splits: str | Path | None = None, split: str | None = None) -> dict:
    """DeLong test of model A against model B for one binary task, on the cases both predicted.

    Args:
        predictions_a: first predictions CSV.
        predictions_b: second predictions CSV.
        truth: manifest.
        task: ``malignant``, ``tumour_vs_normal``, ``benign`` or ``normal`` (one vs rest).
        splits: optional splits CSV; with ``split`` restricts the cases.
        split: the split to use.

    Returns:
        The :func:`~osteolens.evaluation.delong.delong_test` result plus ``task`` and ``n``.
    """
    if task not in TASKS:
        raise EvaluationError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    a = load_inputs(predictions_a, truth, splits, split).table
    b = load_inputs(predictions_b, truth, splits, split).table
    both = a.merge(b, on="case_id", suffixes=("_a", "_b"))
    both = both[both["label_a"].notna()]
    if both.empty:
        raise EvaluationError("the two prediction files share no labelled case")
    positive, score = TASKS[task]
    y = positive(both["label_a"]).to_numpy()
    sa = score(both.rename(columns=lambda c: c[:-2] if c.endswith("_a") else c)).to_numpy(float)
    sb = score(both.rename(columns=lambda c: c[:-2] if c.endswith("_b") else c)).to_numpy(float)
    result = delong_test(y, sa, sb)
    return {"task": task, "n": int(len(both)), **{k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in result.items()}}
