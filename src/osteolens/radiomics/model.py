"""Machine learning on radiomics features: benign vs malignant, with and without clinical variables.

Two model families, as in the radiomics literature on bone tumours:

- ``logistic``: median imputation, standardisation, L2-regularised logistic regression whose
  strength is chosen by an inner patient-grouped cross-validation (balanced class weights);
- ``boosting``: histogram gradient boosting (scikit-learn), balanced class weights.

Clinical variables: age, sex and anatomical site (multi-hot over the bones BTXRD names). For
benign vs malignant among tumour images the site is a legitimate input (every tumour has one),
unlike for tumour vs normal (see :mod:`osteolens.data.clinical`).

Evaluation is patient-grouped: out-of-fold probabilities from stratified group k-fold, then
group-bootstrap CIs (:mod:`osteolens.evaluation.bootstrap`).

Example:
    >>> oof = cross_validated_probabilities(x, y, groups, "logistic")   # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SITES = ("tibia", "femur", "humerus", "fibula", "foot", "hand", "hip bone", "radius", "ulna",
         "knee-joint", "shoulder-joint", "elbow-joint", "ankle-joint")
NON_FEATURE_COLUMNS = ("case_id", "status", "error")


def clinical_matrix(frame: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Age (decades), age missing, male, then one column per site in :data:`SITES` plus ``site=other``."""
    age = pd.to_numeric(frame["age"], errors="coerce")
    cols = [(age.fillna(age.median()) / 10.0).to_numpy(), age.isna().to_numpy(float),
            frame["sex"].astype(str).str.upper().str.startswith("M").to_numpy(float)]
    names = ["age_decades", "age_missing", "sex_male"]
    parts = frame["site"].fillna("").astype(str).str.lower().str.split(";")
    for site in SITES:
        cols.append(parts.map(lambda p, s=site: float(s in [x.strip() for x in p])).to_numpy())
        names.append(f"site={site}")
    cols.append(parts.map(lambda p: float(any(x.strip() and x.strip() not in SITES for x in p))).to_numpy())
    names.append("site=other")
    return np.column_stack(cols), names


def feature_matrix(features: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """The numeric feature columns of a one-row-per-case table; columns never defined are dropped."""
    cols = [c for c in features.columns if c not in NON_FEATURE_COLUMNS]
    x = features[cols].apply(pd.to_numeric, errors="coerce")
    keep = [c for c in cols if x[c].notna().any() and x[c].nunique(dropna=True) > 1]
    return x[keep].to_numpy(float), keep


def make_model(kind: str, seed: int = 0):
    """An unfitted scikit-learn pipeline."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "logistic":
        return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                             LogisticRegression(C=0.05, class_weight="balanced", max_iter=5000))
    if kind == "boosting":
        return HistGradientBoostingClassifier(learning_rate=0.05, max_iter=300, max_leaf_nodes=15, min_samples_leaf=20,
                                              l2_regularization=1.0, class_weight="balanced", random_state=seed)
    raise ValueError(f"unknown radiomics model {kind!r}; choose logistic or boosting")


def choose_c(x: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int = 0,
             grid=(0.003, 0.01, 0.03, 0.1, 0.3, 1.0)) -> float:
    """The logistic regression's C with the best inner grouped-CV AUC (on training cases only)."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold

    inner = StratifiedGroupKFold(n_splits=3, shuffle=True, random_state=seed)
    scores = {}
    for c in grid:
        aucs = []
        for tr, te in inner.split(x, y, groups):
            m = make_model("logistic")
            m.set_params(logisticregression__C=c)
            m.fit(x[tr], y[tr])
            aucs.append(roc_auc_score(y[te], m.predict_proba(x[te])[:, 1]))
        scores[c] = float(np.mean(aucs))
    return max(scores, key=scores.get)


def fit_model(kind: str, x: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int = 0):
    """Fit one model on training cases (the logistic C tuned by inner grouped CV)."""
    model = make_model(kind, seed)
    if kind == "logistic":
        model.set_params(logisticregression__C=choose_c(x, y, groups, seed))
    return model.fit(x, y)


def cross_validated_probabilities(x: np.ndarray, y: np.ndarray, groups: np.ndarray, kind: str, folds: int = 5,
                                  seed: int = 0) -> np.ndarray:
    """Out-of-fold P(malignant) from patient-grouped, label-stratified k-fold."""
    from sklearn.model_selection import StratifiedGroupKFold

    oof = np.full(len(y), np.nan)
    for tr, te in StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(x, y, groups):
        oof[te] = fit_model(kind, x[tr], y[tr], groups[tr], seed).predict_proba(x[te])[:, 1]
    return oof


def importance(model, kind: str, x: np.ndarray, y: np.ndarray, names: list[str], seed: int = 0) -> pd.DataFrame:
    """Per-feature importance: standardised coefficients (logistic) or permutation AUC drop (boosting)."""
    if kind == "logistic":
        coef = model[-1].coef_[0]
        return pd.DataFrame({"feature": names, "importance": np.abs(coef), "direction": np.sign(coef)}) \
            .sort_values("importance", ascending=False, ignore_index=True)
    from sklearn.inspection import permutation_importance

    r = permutation_importance(model, x, y, scoring="roc_auc", n_repeats=5, random_state=seed)
    return pd.DataFrame({"feature": names, "importance": r.importances_mean, "direction": np.nan}) \
        .sort_values("importance", ascending=False, ignore_index=True)


def readable(column: str) -> str:
    """A clinician-readable label for a feature column (IBSI title, aggregation, or clinical name)."""
    from osteolens.radiomics.names import FEATURES

    if not column.startswith("feat_"):
        return column.replace("site=", "site: ").replace("_", " ")
    anchor, _, agg = column.partition("__")
    title = next((t for a, _, t in FEATURES.values() if a == anchor), anchor)
    return f"{title} ({agg.replace('_', ' ').replace('d ', 'D ').replace('2d', '2D').replace('3d', '3D')})" if agg else title


def plot_importance(table: pd.DataFrame, path, title: str, top: int = 15) -> None:
    """Horizontal bars of the top features; red pushes towards malignant, blue towards benign."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = table.head(top).iloc[::-1]
    colours = ["#c0392b" if d > 0 else "#2e86c1" if d < 0 else "#7f8c8d" for d in t["direction"].fillna(0)]
    fig, ax = plt.subplots(figsize=(8, 0.38 * len(t) + 1.4))
    ax.barh([readable(f) for f in t["feature"]], t["importance"], color=colours)
    ax.set_xlabel("|standardised coefficient|" if t["direction"].notna().all() else "AUC drop when the feature is shuffled")
    ax.set_title(title, fontsize=10, wrap=True)
    if t["direction"].notna().all():
        ax.text(0.99, 0.02, "red: higher value -> malignant\nblue: higher value -> benign", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
