"""Patient-grouped, label-stratified splits: train/validation/test, k-fold, centre held out.

No group ever crosses splits. Groups are the manifest's ``group_id``; with
``link_duplicates`` the groups of cases whose images are identical or near-identical are
merged first (BTXRD holds such twins under different groups, some with conflicting labels).

Groups are placed greedily in seeded random order, each into the split that brings the
per-label image counts closest to their targets (relative squared deviation).

Example:
    >>> from osteolens.data.splits import split_manifest
    >>> result = split_manifest("manifest.csv", seed=0)           # doctest: +SKIP
    >>> result.table.split.value_counts()                         # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from osteolens.data.manifest import Manifest, load_manifest
from osteolens.errors import SplitError

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class SplitResult:
    """Per-case assignment and its summary."""

    table: pd.DataFrame  # case_id, group_id, split_group, label, centre, split or fold
    kind: str  # "holdout", "kfold" or "centre"
    seed: int
    notes: list[str] = field(default_factory=list)

    @property
    def column(self) -> str:
        return "fold" if self.kind == "kfold" else "split"

    def balance(self) -> pd.DataFrame:
        """Cases per label in each split (or fold), with group counts and label percentages."""
        t = self.table
        counts = pd.crosstab(t[self.column], t["label"].fillna("unlabelled"))
        pct = counts.div(counts.sum(axis=1), axis=0).mul(100).round(1).add_suffix(" %")
        out = counts.join(pct)
        out.insert(0, "groups", t.groupby(self.column)["split_group"].nunique())
        out.insert(0, "cases", t.groupby(self.column).size())
        return out

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.table.to_csv(path, index=False)
        return path


def link_groups(group_ids: list[str], pairs: list[tuple[int, int]]) -> list[str]:
    """Merge groups joined by case pairs (union-find); a merged group takes its smallest id.

    Example:
        >>> link_groups(["a", "b", "c"], [(1, 2)])
        ['a', 'b', 'b']
    """
    parent: dict[str, str] = {g: g for g in group_ids}

    def find(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    for i, j in pairs:
        a, b = find(group_ids[i]), find(group_ids[j])
        if a != b:
            lo, hi = sorted((a, b))
            parent[hi] = lo
    return [find(g) for g in group_ids]


def assign_groups(groups: np.ndarray, strata: np.ndarray, fractions: list[float], seed: int) -> np.ndarray:
    """Place whole groups into bins so that each bin gets its fraction of every stratum.

    Args:
        groups: group id per case.
        strata: stratum (label) per case.
        fractions: target fraction per bin (summing to 1).
        seed: seeds the order in which groups are placed.

    Returns:
        Bin index per case.
    """
    fr = np.asarray(fractions, dtype=float)
    if np.any(fr <= 0) or abs(fr.sum() - 1) > 1e-6:
        raise SplitError(f"fractions must be positive and sum to 1, got {list(fractions)}")
    g_codes, g_index = np.unique(groups, return_inverse=True)
    s_codes, s_index = np.unique(strata, return_inverse=True)
    if len(g_codes) < len(fr):
        raise SplitError(f"{len(g_codes)} group(s) cannot fill {len(fr)} splits")
    per_group = np.zeros((len(g_codes), len(s_codes)))
    np.add.at(per_group, (g_index, s_index), 1)
    target = fr[:, None] * per_group.sum(axis=0)[None, :]
    current = np.zeros_like(target)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(g_codes))
    bin_of_group = np.empty(len(g_codes), dtype=int)
    scale = 1.0 / (target + 1.0)
    for g in order:
        # cost of each choice: squared relative distance from target over all bins and strata
        base = ((current - target) * scale) ** 2
        gain = ((current + per_group[g] - target) * scale) ** 2 - base
        cost = gain.sum(axis=1)
        b = int(np.argmin(cost))
        bin_of_group[g] = b
        current[b] += per_group[g]
    return bin_of_group[g_index]


def _frame(manifest: Manifest, link_duplicates: bool, near_bits: int) -> tuple[pd.DataFrame, list[str]]:
    frame = manifest.to_frame()[["case_id", "group_id", "label", "centre"]].copy()
    notes: list[str] = []
    split_group = list(frame["group_id"])
    if link_duplicates:
        from osteolens.data.verify import duplicate_pairs, image_fingerprints

        pixel, perceptual = image_fingerprints(manifest)
        pairs = [(i, j) for i, j, _ in duplicate_pairs(pixel, perceptual, near_bits)]
        merged = link_groups(split_group, pairs)
        n_merged = len(set(split_group)) - len(set(merged))
        notes.append(f"{len(pairs)} duplicate/near-duplicate image pair(s) found; {n_merged} group(s) merged into others")
        split_group = merged
    frame.insert(2, "split_group", split_group)
    return frame, notes


def split_manifest(
    manifest: str | Path | Manifest,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    k_folds: int | None = None,
    hold_out_centre: str | None = None,
    link_duplicates: bool = True,
    near_duplicate_bits: int = 2,
) -> SplitResult:
    """Split a manifest by patient group, stratified by label.

    Args:
        manifest: manifest path or object.
        fractions: train/val/test fractions for the hold-out split.
        seed: random seed.
        k_folds: if given, make k folds (column ``fold``) instead of train/val/test.
        hold_out_centre: if given (one centre, or several comma-separated: ``"2,3"``), every
            case of these centres is ``test`` and the rest is split
            into train/val in the ratio of ``fractions[0]:fractions[1]``.
        link_duplicates: merge the groups of identical / near-identical images first.
        near_duplicate_bits: perceptual-hash distance for near-duplicates.

    Returns:
        The :class:`SplitResult`.

    Raises:
        SplitError: unknown centre, too few groups, bad fractions.
    """
    if not isinstance(manifest, Manifest):
        manifest = load_manifest(manifest)
    frame, notes = _frame(manifest, link_duplicates, near_duplicate_bits)
    strata = frame["label"].fillna("unlabelled").to_numpy()
    groups = frame["split_group"].to_numpy()
    if k_folds is not None:
        if k_folds < 2:
            raise SplitError(f"k_folds must be at least 2, got {k_folds}")
        frame["fold"] = assign_groups(groups, strata, [1.0 / k_folds] * k_folds, seed)
        result = SplitResult(frame, "kfold", seed, notes)
    elif hold_out_centre is not None:
        held = [c.strip() for c in str(hold_out_centre).split(",") if c.strip()]
        centres = sorted(frame["centre"].dropna().unique())
        unknown = [c for c in held if c not in centres]
        if unknown or not held:
            raise SplitError(f"centre {', '.join(unknown) or hold_out_centre!r} not in manifest; centres are {', '.join(centres) or 'none'}")
        centre = ",".join(held)
        in_centre = frame["centre"].isin(held).to_numpy()
        test_groups = set(groups[in_centre])
        split = np.full(len(frame), "", dtype=object)
        split[in_centre] = "test"
        # a group with cases both inside and outside the centre: keep it out of training
        leak = ~in_centre & np.isin(groups, list(test_groups))
        split[leak] = "excluded"
        if leak.any():
            notes.append(f"{int(leak.sum())} case(s) outside centre {centre} share a group with it: excluded")
        rest = split == ""
        train_val = np.array(fractions[:2], dtype=float)
        bins = assign_groups(groups[rest], strata[rest], list(train_val / train_val.sum()), seed)
        split[rest] = np.array(["train", "val"])[bins]
        frame["split"] = split
        result = SplitResult(frame, "centre", seed, notes)
    else:
        bins = assign_groups(groups, strata, list(fractions), seed)
        frame["split"] = np.array(SPLIT_NAMES)[bins]
        result = SplitResult(frame, "holdout", seed, notes)
    _check_no_group_crosses(result)
    return result


def _check_no_group_crosses(result: SplitResult) -> None:
    per_group = result.table.groupby("split_group")[result.column].nunique()
    crossing = per_group[per_group > 1]
    if len(crossing):  # a bug in this module, never the user's fault
        raise SplitError(f"internal error: group(s) {list(crossing.index[:5])} cross splits")


def load_splits(path: str | Path) -> pd.DataFrame:
    """Read a splits CSV written by :func:`split_manifest`."""
    path = Path(path)
    if not path.is_file():
        raise SplitError(f"{path}: splits file not found")
    table = pd.read_csv(path, dtype={"case_id": str, "group_id": str, "split_group": str, "centre": str})
    if "case_id" not in table.columns or not ({"split", "fold"} & set(table.columns)):
        raise SplitError(f"{path}: not a splits file (needs case_id and split or fold)")
    return table


def cases_in_split(manifest: Manifest, splits: pd.DataFrame, split: str) -> list:
    """The manifest's cases that ``splits`` (from :func:`load_splits`) puts in ``split``, in manifest order.

    Raises:
        SplitError: the splits table has no ``split`` column, or no case in ``split``.
    """
    if "split" not in splits.columns:
        raise SplitError("the splits table has no 'split' column (a k-fold table names folds instead)")
    ids = set(splits.loc[splits["split"] == split, "case_id"].astype(str))
    cases = [c for c in manifest.cases if c.case_id in ids]
    if not cases:
        raise SplitError(f"no case of the manifest is in split {split!r}")
    return cases
