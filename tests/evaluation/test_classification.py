import numpy as np
import pytest
from sklearn import metrics as skm

from osteolens.evaluation import classification as cls


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 3, 500)
    logits = rng.normal(size=(500, 3))
    logits[np.arange(500), y] += 1.2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    w = rng.integers(0, 4, 500).astype(float)
    return y, np.round(probs, 2), w  # rounding makes ties


def test_auc_matches_sklearn_with_ties_and_weights(data):
    y, p, w = data
    for k in range(3):
        assert cls.roc_auc(y == k, p[:, k]) == pytest.approx(skm.roc_auc_score(y == k, p[:, k]), abs=1e-12)
        assert cls.roc_auc(y == k, p[:, k], w) == pytest.approx(skm.roc_auc_score(y == k, p[:, k], sample_weight=w), abs=1e-12)
    assert cls.macro_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p / p.sum(1, keepdims=True), multi_class="ovr", average="macro"), abs=1e-3)


def test_weight_matrix_gives_one_value_per_row(data):
    y, p, w = data
    W = np.stack([np.ones(len(y)), w])
    both = cls.roc_auc(y == 2, p[:, 2], W)
    assert both.shape == (2,)
    assert both[1] == pytest.approx(cls.roc_auc(y == 2, p[:, 2], w))


def test_binary_metrics_match_confusion_counts(data):
    y, p, w = data
    truth, pred = y == 2, p[:, 2] > 0.4
    tn, fp, fn, tp = skm.confusion_matrix(truth, pred, sample_weight=w).ravel()
    assert cls.sensitivity(truth, pred, w) == pytest.approx(tp / (tp + fn))
    assert cls.specificity(truth, pred, w) == pytest.approx(tn / (tn + fp))
    assert cls.ppv(truth, pred, w) == pytest.approx(skm.precision_score(truth, pred, sample_weight=w))
    assert cls.npv(truth, pred, w) == pytest.approx(tn / (tn + fn))
    assert cls.f1(truth, pred, w) == pytest.approx(skm.f1_score(truth, pred, sample_weight=w))
    assert cls.binary_balanced_accuracy(truth, pred) == pytest.approx(skm.balanced_accuracy_score(truth, pred))


def test_multiclass_metrics_match_sklearn(data):
    y, p, w = data
    pred = p.argmax(axis=1)
    assert cls.multiclass_accuracy(y, pred, w) == pytest.approx(skm.accuracy_score(y, pred, sample_weight=w))
    assert cls.multiclass_balanced_accuracy(y, pred) == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert cls.macro_f1(y, pred) == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert np.array_equal(cls.confusion_matrix(y, pred, 3), skm.confusion_matrix(y, pred))


def test_hand_computed_case():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    # pairs (pos, neg): (.35,.1) yes, (.35,.4) no, (.8,.1) yes, (.8,.4) yes -> 3/4
    assert cls.roc_auc(y, s) == 0.75
    assert np.isnan(cls.roc_auc(np.zeros(4), s))
    thr = cls.threshold_for_sensitivity(y, s, 1.0)
    assert thr == 0.35 and cls.sensitivity(y, s >= thr) == 1.0 and cls.specificity(y, s >= thr) == 0.5
