import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from osteolens.evaluation.bootstrap import bootstrap_metric, group_bootstrap_weights
from osteolens.evaluation.calibration import brier_score, expected_calibration_error, reliability_curve
from osteolens.evaluation.classification import roc_auc
from osteolens.evaluation.delong import delong_test


def test_ece_by_hand():
    # two bins used: conf 0.95 (2 cases, 1 right) and 0.65 (2 cases, 2 right), 15 bins
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.35, 0.65], [0.35, 0.65]])
    y = np.array([0, 1, 1, 1])
    expected = 0.5 * abs(0.5 - 0.95) + 0.5 * abs(1.0 - 0.65)
    assert expected_calibration_error(y, probs) == pytest.approx(expected)
    curve = reliability_curve(y, probs)
    assert curve["count"] == [2, 2] and curve["accuracy"] == [1.0, 0.5]


def test_brier_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = rng.random(200)
    assert brier_score(y, p) == pytest.approx(brier_score_loss(y, p))
    two = np.stack([1 - p, p], axis=1)
    assert brier_score(y, two) == pytest.approx(2 * brier_score_loss(y, p))


def _brute_force_delong(y, a, b):
    pos, neg = y == 1, y == 0

    def placements(s):
        psi = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        return psi.mean(axis=1), psi.mean(axis=0)

    v10a, v01a = placements(a)
    v10b, v01b = placements(b)
    m, n = pos.sum(), neg.sum()
    var_a = np.var(v10a, ddof=1) / m + np.var(v01a, ddof=1) / n
    var_b = np.var(v10b, ddof=1) / m + np.var(v01b, ddof=1) / n
    cov = np.cov(v10a, v10b)[0, 1] / m + np.cov(v01a, v01b)[0, 1] / n
    return var_a, var_b, cov


def test_delong_matches_brute_force_and_sklearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 120)
    a = np.round(y + rng.normal(0, 1.0, 120), 1)
    b = np.round(y + rng.normal(0, 1.5, 120), 1)
    r = delong_test(y, a, b)
    var_a, var_b, cov = _brute_force_delong(y, a, b)
    assert r["auc_a"] == pytest.approx(roc_auc_score(y, a))
    assert r["auc_b"] == pytest.approx(roc_auc_score(y, b))
    assert r["var_a"] == pytest.approx(var_a) and r["var_b"] == pytest.approx(var_b) and r["covariance"] == pytest.approx(cov)
    z = (r["auc_a"] - r["auc_b"]) / np.sqrt(var_a + var_b - 2 * cov)
    assert r["z"] == pytest.approx(z)
    assert 0 < r["p_value"] < 1
    same = delong_test(y, a, a)
    assert same["p_value"] == 1.0 and same["difference"] == 0.0


def test_group_bootstrap_resamples_groups_not_images():
    groups = np.array(["p1", "p1", "p1", "p2", "p3", "p3"])
    W = group_bootstrap_weights(groups, n_boot=500, seed=1)
    assert W.shape == (500, 6)
    assert (W[:, 0] == W[:, 1]).all() and (W[:, 1] == W[:, 2]).all() and (W[:, 4] == W[:, 5]).all()
    # three groups drawn per resample
    assert ((W[:, 0] + W[:, 3] + W[:, 4]) == 3).all()
    assert np.array_equal(W, group_bootstrap_weights(groups, n_boot=500, seed=1))


def test_bootstrap_ci_is_wider_when_images_are_clustered():
    rng = np.random.default_rng(0)
    n_pat = 150
    y_pat = rng.integers(0, 2, n_pat)
    s_pat = y_pat + rng.normal(0, 1, n_pat)
    # each patient contributes 4 near-identical images
    y = np.repeat(y_pat, 4)
    s = np.repeat(s_pat, 4) + rng.normal(0, 0.01, 4 * n_pat)
    by_patient = bootstrap_metric(roc_auc, (y, s), groups=np.repeat(np.arange(n_pat), 4), n_boot=1000, seed=0)
    by_image = bootstrap_metric(roc_auc, (y, s), groups=np.arange(4 * n_pat), n_boot=1000, seed=0)
    assert by_patient.ci_low < by_patient.value < by_patient.ci_high
    width_p = by_patient.ci_high - by_patient.ci_low
    width_i = by_image.ci_high - by_image.ci_low
    assert width_p > 1.6 * width_i  # about sqrt(4) = 2 times wider
