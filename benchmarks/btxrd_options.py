"""The command-line options the BTXRD radiograph benchmarks share: the model, the data, the split."""

from __future__ import annotations

import argparse
from pathlib import Path

BTXRD = Path(__file__).resolve().parents[1] / "work" / "btxrd"  # where the README's import puts it


def add_btxrd_options(ap: argparse.ArgumentParser, split: str | None = None, tag: str | None = None) -> None:
    """``--model``, ``--manifest`` and ``--splits``; ``--split`` and ``--tag`` too when given a default."""
    ap.add_argument("--model", default="osteolens-radiograph")
    ap.add_argument("--manifest", default=str(BTXRD / "manifest.csv"))
    ap.add_argument("--splits", default=str(BTXRD / "splits.csv"))
    if split is not None:
        ap.add_argument("--split", default=split)
    if tag is not None:
        ap.add_argument("--tag", default=tag)
