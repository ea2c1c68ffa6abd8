import numpy as np
import pytest

from osteolens.clinical.fusion import FusionModel, clinical_design, log_probs
from osteolens.models.registry import ModelIntegrityError


def test_fusion_learns_from_a_clinical_signal_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    n = 600
    age = rng.uniform(5, 80, n)
    y = (age < 25).astype(int) + (rng.random(n) < 0.3)  # label tied to age
    y = np.clip(y, 0, 2)
    noisy = rng.dirichlet([1, 1, 1], n)  # image probabilities without information
    records = [{"age": a, "sex": "M", "region": "lower limb", "view": "frontal"} for a in age]
    clin = clinical_design(records)
    with_clin = FusionModel.fit(log_probs(noisy), clin, y)
    image_only = FusionModel.fit(log_probs(noisy), None, y)
    acc_c = (with_clin.predict_proba(log_probs(noisy), clin).argmax(1) == y).mean()
    acc_i = (image_only.predict_proba(log_probs(noisy)).argmax(1) == y).mean()
    assert acc_c > acc_i + 0.1
    path = with_clin.save(tmp_path / "fusion.json")
    again = FusionModel.load(path)
    assert np.allclose(again.predict_proba(log_probs(noisy), clin), with_clin.predict_proba(log_probs(noisy), clin))
    path.write_text(path.read_text().replace('"version": "1.0.0"', '"version": "9"'))
    with pytest.raises(ModelIntegrityError):
        FusionModel.load(path)
