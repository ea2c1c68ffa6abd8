"""Counts that describe a manifest: labels, subtypes, centres, sex, age, views, groups."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from osteolens.data.manifest import Manifest, load_manifest


def summarize_manifest(manifest: str | Path | Manifest) -> dict:
    """Summarise a manifest.

    Args:
        manifest: path or loaded manifest.

    Returns:
        dict with ``n_cases``, ``n_groups``, ``with_mask`` and per-field counts
        (``label``, ``subtype``, ``centre``, ``sex``, ``view``, ``region``) and ``age``
        (min, median, max).

    Example:
        >>> summarize_manifest("manifest.csv")["label"]          # doctest: +SKIP
        {'normal': 1591, 'benign': 1292, 'malignant': 288}
    """
    if not isinstance(manifest, Manifest):
        manifest = load_manifest(manifest)
    f = manifest.to_frame()
    age = pd.to_numeric(f["age"], errors="coerce").dropna()
    counts = {
        col: {str(k): int(v) for k, v in f[col].value_counts(dropna=True).items()}
        for col in ("label", "subtype", "centre", "sex", "view", "region")
    }
    return {
        "n_cases": len(f),
        "n_groups": int(f["group_id"].nunique()),
        "with_mask": int(f["mask"].notna().sum()),
        **counts,
        "age": {"min": float(age.min()), "median": float(age.median()), "max": float(age.max())} if len(age) else None,
    }
