"""PNG plots of an evaluation: ROC curves, reliability diagram, confusion matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from osteolens import RESEARCH_NOTICE


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(curves: dict, out: Path) -> list[str]:
    """Write ``roc.png``, ``reliability.png`` and ``confusion.png``; return their names."""
    plt = _figure()
    written = []
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (fpr, tpr) in curves.get("roc", {}).items():
        ax.plot(fpr, tpr, label=name.replace("_", " "))
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC (one vs rest)")
    ax.legend(loc="lower right", fontsize=8)
    fig.text(0.01, 0.005, RESEARCH_NOTICE, fontsize=5)
    fig.savefig(out / "roc.png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    written.append("roc.png")

    rel = curves.get("reliability")
    if rel:
        fig, ax = plt.subplots(figsize=(5, 5))
        centres = (np.array(rel["bin_low"]) + np.array(rel["bin_high"])) / 2
        ax.bar(centres, rel["accuracy"], width=1 / 15, edgecolor="k", alpha=0.6, label="accuracy")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="perfect calibration")
        ax.plot(rel["confidence"], rel["accuracy"], "o-", color="C3", ms=3, label="per bin")
        ax.set(xlabel="confidence (top label)", ylabel="accuracy", title="Reliability diagram", xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=8)
        fig.text(0.01, 0.005, RESEARCH_NOTICE, fontsize=5)
        fig.savefig(out / "reliability.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        written.append("reliability.png")

    cm = curves.get("confusion")
    if cm is not None:
        from osteolens.data.manifest import LABELS

        fig, ax = plt.subplots(figsize=(4.5, 4))
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, int(v), ha="center", va="center", color="k")
        ax.set_xticks(range(len(LABELS)), LABELS)
        ax.set_yticks(range(len(LABELS)), LABELS)
        ax.set(xlabel="prediction", ylabel="truth", title="Confusion matrix")
        fig.text(0.01, 0.005, RESEARCH_NOTICE, fontsize=5)
        fig.savefig(out / "confusion.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        written.append("confusion.png")
    return written
