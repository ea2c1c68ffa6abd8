import numpy as np
import pytest

from osteolens.inference.lesion_malignancy import combined_probabilities, fit_combination, main_logit


def test_the_combination_splits_only_the_tumour_share_and_leaves_images_without_a_view():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1, 1], size=50)
    lesion = rng.normal(0, 2, 50)
    lesion[::5] = np.nan
    settings = {"main_weight": 0.7, "lesion_weight": 1.3, "bias": -0.4}
    out = combined_probabilities(probs, lesion, settings)
    assert np.allclose(out[:, 0], probs[:, 0]) and np.allclose(out[:, 1] + out[:, 2], probs[:, 1] + probs[:, 2])
    assert np.array_equal(out[::5], probs[::5])
    c = 0.7 * np.log(probs[1, 2] / probs[1, 1]) + 1.3 * lesion[1] - 0.4
    assert out[1, 2] == pytest.approx((probs[1, 1] + probs[1, 2]) / (1 + np.exp(-c)))
    one = combined_probabilities(probs[1], lesion[1], settings)
    assert np.allclose(one, out[1])
    higher = combined_probabilities(probs[1], lesion[1] + 1, settings)
    assert higher[2] > one[2] and higher[0] == one[0]
    assert np.array_equal(combined_probabilities(probs, None, settings), probs)


def test_the_fit_recovers_the_weights_that_made_the_labels():
    rng = np.random.default_rng(1)
    n = 6000
    main, lesion = rng.normal(0, 1.5, n), rng.normal(0, 1.5, n)
    share = 1 / (1 + np.exp(-main))
    probs = np.stack([np.full(n, 0.2), 0.8 * (1 - share), 0.8 * share], 1)
    assert np.allclose(main_logit(probs), main)
    truth = 0.8 * main + 1.5 * lesion - 0.5
    labels = np.where(rng.random(n) < 1 / (1 + np.exp(-truth)), 2, 1)
    labels[:500] = 0  # normal images do not enter the fit
    lesion[500:700] = np.nan  # nor do images without a view
    fit = fit_combination(probs, lesion, labels)
    assert fit["main_weight"] == pytest.approx(0.8, abs=0.12) and fit["lesion_weight"] == pytest.approx(1.5, abs=0.15)
    assert fit["bias"] == pytest.approx(-0.5, abs=0.12)
    assert fit["n_benign"] + fit["n_malignant"] == n - 700


def test_the_fit_refuses_too_few_images_of_a_class():
    probs = np.full((12, 3), 1 / 3)
    labels = np.array([1] * 8 + [2] * 4)
    with pytest.raises(ValueError, match="8 benign and 4 malignant images with a lesion view"):
        fit_combination(probs, np.zeros(12), labels)
