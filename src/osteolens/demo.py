"""The demo run by ``make demo``: the main job on the radiographs bundled with the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from osteolens import RESEARCH_NOTICE


def sample_dir() -> Path:
    """The folder of bundled BTXRD sample radiographs (dataset.csv, images/, masks/)."""
    return Path(str(resources.files("osteolens") / "samples" / "btxrd"))


def run_demo(out: str | Path, console=None, model: str = "osteolens-radiograph") -> dict:
    """Import and verify the bundled samples, then analyse them with the default model.

    Args:
        out: output folder (``samples/`` manifest, ``analysis/`` results).
        console: a Rich console to print to (``None`` prints nothing).
        model: the model to analyse with.

    Returns:
        dict with the output folder, manifest, dataset summary, verify counts and one result
        row per sample image.
    """
    from osteolens.data.clinical import clinical_table
    from osteolens.data.importers import import_btxrd
    from osteolens.data.summary import summarize_manifest
    from osteolens.data.verify import verify_manifest
    from osteolens.inference.analyze import analyze

    out = Path(out)
    imported = import_btxrd(sample_dir(), out / "samples")
    report = verify_manifest(imported.manifest)
    summary = summarize_manifest(imported.manifest)
    cases = imported.manifest.cases
    clinical = clinical_table(cases)
    clinical.to_csv(out / "samples" / "clinical.csv", index=False)
    results = analyze([imported.manifest.resolve(c.image) for c in cases], out / "analysis", model=model,
                      clinical_csv=out / "samples" / "clinical.csv")
    truth = {Path(c.image).name: c.label for c in cases}
    if console is not None:
        from rich.table import Table

        console.print(f"[bold]{RESEARCH_NOTICE}[/]")
        console.print(f"imported {summary['n_cases']} bundled BTXRD radiographs into {imported.manifest_path}")
        console.print(f"verify: {report.n_cases} cases read, problems: {report.counts() or 'none'}")
        table = Table(title=f"osteolens analyze with {model} (truth from BTXRD)")
        for col in ("image", "truth", "decision", "p N/B/M", "subtype", "unc.", "boxes"):
            table.add_column(col, no_wrap=col in ("image", "p N/B/M"))
        for r in results:
            decision = "refer" if r.label == "indeterminate" else r.label
            table.add_row(r.image, truth.get(r.image, ""), decision, f"{r.p_normal:.2f}/{r.p_benign:.2f}/{r.p_malignant:.2f}",
                          r.subtype or "-", f"{r.uncertainty:.2f}", str(len(r.boxes)))
        console.print("decision 'refer' = indeterminate: refer to a specialist")
        console.print(table)
        console.print(f"outputs: {out / 'analysis'} (predictions.csv, masks/, overlays, report.html)")
    return {"out": str(out), "manifest": str(imported.manifest_path), "summary": summary, "verify": report.counts(),
            "results": [r.row() for r in results]}
