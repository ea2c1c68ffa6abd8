import numpy as np
import pytest

from osteolens.data.manifest import load_manifest
from osteolens.data.splits import assign_groups, cases_in_split, link_groups, load_splits, split_manifest
from osteolens.errors import SplitError


@pytest.fixture(scope="module")
def holdout(btxrd_manifest):
    return split_manifest(btxrd_manifest, seed=0)


def test_no_group_crosses_and_fractions_hold(holdout):
    t = holdout.table
    assert (t.groupby("group_id")["split"].nunique() == 1).all()
    assert (t.groupby("split_group")["split"].nunique() == 1).all()
    share = t["split"].value_counts(normalize=True)
    assert abs(share["train"] - 0.7) < 0.02 and abs(share["val"] - 0.1) < 0.02 and abs(share["test"] - 0.2) < 0.02
    balance = holdout.balance()
    for label in ("normal", "benign", "malignant"):
        assert balance[f"{label} %"].max() - balance[f"{label} %"].min() < 2.0


def test_duplicate_images_land_in_one_split(holdout):
    t = holdout.table.set_index("case_id")
    # IMG003456 (normal) is pixel-identical to IMG000591 (benign), in another BTXRD group
    assert t.loc["IMG003456", "group_id"] != t.loc["IMG000591", "group_id"]
    assert t.loc["IMG003456", "split"] == t.loc["IMG000591", "split"]


def test_seeded(btxrd_manifest, holdout):
    again = split_manifest(btxrd_manifest, seed=0, link_duplicates=True)
    other = split_manifest(btxrd_manifest, seed=1, link_duplicates=True)
    assert (again.table["split"] == holdout.table["split"]).all()
    assert (other.table["split"] != holdout.table["split"]).any()


def test_kfold_and_centre_hold_out(btxrd_manifest, tmp_path):
    k = split_manifest(btxrd_manifest, k_folds=5, link_duplicates=False)
    assert sorted(k.table["fold"].unique()) == [0, 1, 2, 3, 4]
    assert (k.table.groupby("group_id")["fold"].nunique() == 1).all()
    assert k.table["fold"].value_counts().min() > 580
    c = split_manifest(btxrd_manifest, hold_out_centre="2", link_duplicates=False)
    t = c.table
    assert set(t.loc[t["split"] == "test", "centre"]) == {"2"}
    assert (t["centre"] == "2").sum() == (t["split"] == "test").sum() == 460
    path = c.save(tmp_path / "splits.csv")
    assert len(load_splits(path)) == 3171
    two = split_manifest(btxrd_manifest, hold_out_centre="2,3", link_duplicates=False).table
    assert set(two.loc[two["split"] == "test", "centre"]) == {"2", "3"} and set(two.loc[two["split"] != "test", "centre"]) == {"1"}
    with pytest.raises(SplitError, match="centre '9' not in manifest"):
        split_manifest(btxrd_manifest, hold_out_centre="9", link_duplicates=False)


def test_cases_in_split_follow_the_splits_file_in_manifest_order(btxrd_manifest, holdout, tmp_path):
    manifest = load_manifest(btxrd_manifest)
    table = load_splits(holdout.save(tmp_path / "splits.csv"))
    test = cases_in_split(manifest, table, "test")
    assert [c.case_id for c in test] == [c.case_id for c in manifest.cases
                                         if c.case_id in set(table.loc[table["split"] == "test", "case_id"])]
    assert len(test) == (holdout.table["split"] == "test").sum()
    with pytest.raises(SplitError, match="no case of the manifest is in split 'tset'"):
        cases_in_split(manifest, table, "tset")
    with pytest.raises(SplitError, match="no 'split' column"):
        cases_in_split(manifest, table.drop(columns="split"), "test")


def test_link_groups_and_assign_groups_small():
    assert link_groups(["a", "b", "c", "d"], [(0, 2), (2, 3)]) == ["a", "b", "a", "a"]
    groups = np.repeat(np.arange(20), 2)
    strata = np.tile([0, 1], 20)
    bins = assign_groups(groups, strata, [0.5, 0.5], seed=0)
    assert (bins[::2] == bins[1::2]).all() and bins.sum() == 20
    with pytest.raises(SplitError):
        assign_groups(groups, strata, [0.5, 0.6], seed=0)
