import numpy as np
import pandas as pd
import pytest

from osteolens.evaluation.classification import roc_auc
from osteolens.radiomics.batch import extract_batch
from osteolens.radiomics.model import (SITES, clinical_matrix, cross_validated_probabilities, feature_matrix, fit_model,
                                       importance, plot_importance, readable)
from osteolens.radiomics.settings import RadiomicsSettings


@pytest.fixture(scope="module")
def small_real_set(btxrd_manifest):
    """80 real tumour radiographs (40 malignant, 40 benign, distinct patient groups) with shape/intensity features."""
    m = pd.read_csv(btxrd_manifest)
    root = btxrd_manifest.parent
    picked = pd.concat([m[m.label == k].drop_duplicates("group_id").iloc[:40] for k in ("malignant", "benign")],
                       ignore_index=True)
    settings = RadiomicsSettings(name="test", dimensions="2D", families=["morph", "stat", "ih"], n_bins=32,
                                 texture_aggregations=["2d_average"])
    feats = extract_batch([(r.case_id, str(root / r.image), str(root / r.mask)) for r in picked.itertuples()], settings)
    assert (feats.status == "ok").all()
    return picked, feats


def test_clinical_matrix_encodes_age_sex_and_multi_site():
    frame = pd.DataFrame({"age": [30, None], "sex": ["M", "F"], "site": ["tibia;fibula", "skull"]})
    x, names = clinical_matrix(frame)
    assert names[:3] == ["age_decades", "age_missing", "sex_male"] and len(names) == 3 + len(SITES) + 1
    assert x[0, 0] == 3.0 and x[1, 0] == 3.0 and x[1, 1] == 1.0  # missing age -> median, flagged
    assert x[0, names.index("site=tibia")] == 1 and x[0, names.index("site=fibula")] == 1
    assert x[1, names.index("site=other")] == 1 and x[0, names.index("site=other")] == 0


def test_feature_matrix_drops_undefined_and_constant_columns():
    t = pd.DataFrame({"case_id": ["a", "b", "c"], "status": "ok", "error": "", "f1": [1.0, 2.0, 3.0],
                      "never": [np.nan] * 3, "constant": [5.0] * 3})
    x, names = feature_matrix(t)
    assert names == ["f1"] and x.shape == (3, 1)


def test_grouped_cv_on_real_radiographs(small_real_set):
    picked, feats = small_real_set
    x, names = feature_matrix(feats)
    y = (picked.label == "malignant").to_numpy(int)
    groups = picked.group_id.to_numpy()
    for kind in ("logistic", "boosting"):
        p = cross_validated_probabilities(x, y, groups, kind, folds=4)
        assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
        assert roc_auc(y, p) > 0.6  # shape and intensity separate these lesions better than chance
    model = fit_model("logistic", x, y, groups)
    table = importance(model, "logistic", x, y, names)
    assert len(table) == len(names) and table.importance.is_monotonic_decreasing
    assert set(table.direction.unique()) <= {-1.0, 0.0, 1.0}


def test_importance_plot_and_readable_names(small_real_set, tmp_path):
    picked, feats = small_real_set
    x, names = feature_matrix(feats)
    y = (picked.label == "malignant").to_numpy(int)
    model = fit_model("boosting", x, y, picked.group_id.to_numpy())
    table = importance(model, "boosting", x, y, names)
    plot_importance(table, tmp_path / "imp.png", "test")
    assert (tmp_path / "imp.png").stat().st_size > 5000
    assert readable("feat_stat_mean") == "Mean intensity" and readable("site=hip bone") == "site: hip bone"
