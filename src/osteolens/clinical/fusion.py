"""Late fusion: an image model's probabilities plus clinical variables -> logistic regression.

As in the literature on bone-tumour radiographs, the image model's (log) probabilities and
the patient's clinical vector (age, age^2, sex, body region, view; see
:mod:`osteolens.data.clinical`) feed a multinomial logistic regression fitted on a validation
split. The model is saved as plain numbers in JSON with a sha256 sidecar and a version.

Example:
    >>> fm = FusionModel.fit(log_probs_val, clinical_val, labels_val)      # doctest: +SKIP
    >>> fm.predict_proba(log_probs_test, clinical_test)                  # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from osteolens import __version__
from osteolens.checksums import sha256_file
from osteolens.data.clinical import CLINICAL_FEATURES, encode_clinical
from osteolens.errors import OsteolensError


def clinical_design(records: list[dict]) -> np.ndarray:
    """Clinical vectors (plus age squared) of records with ``age``, ``sex``, ``region``, ``view``."""
    vecs = np.stack([encode_clinical(r.get("age"), r.get("sex"), r.get("region"), r.get("view"))[0] for r in records])
    return np.hstack([vecs, vecs[:, :1] ** 2])


def log_probs(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=float), 1e-6, 1.0))


@dataclass
class FusionModel:
    """Multinomial logistic regression on [log image probabilities, clinical design]."""

    coef: np.ndarray
    intercept: np.ndarray
    use_clinical: bool
    version: str = "1.0.0"
    info: dict = field(default_factory=dict)

    @classmethod
    def fit(cls, image_log_probs: np.ndarray, clinical: np.ndarray | None, labels: np.ndarray, c: float = 1.0,
            info: dict | None = None, n_classes: int = 3) -> "FusionModel":
        """Fit on validation data (never on the test split); every one of ``n_classes`` must occur."""
        from sklearn.linear_model import LogisticRegression

        x = image_log_probs if clinical is None else np.hstack([image_log_probs, clinical])
        lr = LogisticRegression(C=c, max_iter=5000).fit(x, labels)
        if len(lr.classes_) != n_classes:
            raise OsteolensError(f"fusion needs every class in the fitting data, got classes {lr.classes_.tolist()}")
        return cls(lr.coef_, lr.intercept_, clinical is not None, info=info or {})

    def predict_proba(self, image_log_probs: np.ndarray, clinical: np.ndarray | None = None) -> np.ndarray:
        if self.use_clinical and clinical is None:
            raise OsteolensError("this fusion model needs clinical inputs")
        x = image_log_probs if not self.use_clinical else np.hstack([image_log_probs, clinical])
        if x.shape[1] != self.coef.shape[1]:
            raise OsteolensError(f"fusion model expects {self.coef.shape[1]} inputs, got {x.shape[1]}")
        z = x @ self.coef.T + self.intercept
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"coef": self.coef.tolist(), "intercept": self.intercept.tolist(), "use_clinical": self.use_clinical,
                "version": self.version, "inputs": ["log_p_normal", "log_p_benign", "log_p_malignant"]
                + ([*CLINICAL_FEATURES, "age_scaled_squared"] if self.use_clinical else []),
                "software": f"osteolens {__version__}", "info": self.info}
        path.write_text(json.dumps(data, indent=2) + "\n")
        path.with_suffix(".sha256").write_text(sha256_file(path) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FusionModel":
        from osteolens.models.registry import ModelIntegrityError

        path = Path(path)
        sidecar = path.with_suffix(".sha256")
        if not path.is_file() or not sidecar.is_file() or sidecar.read_text().strip() != sha256_file(path):
            raise ModelIntegrityError(f"{path}: missing, or its sha256 does not match {sidecar.name}; refusing to load it")
        d = json.loads(path.read_text())
        return cls(np.array(d["coef"]), np.array(d["intercept"]), d["use_clinical"], d["version"], d.get("info", {}))
