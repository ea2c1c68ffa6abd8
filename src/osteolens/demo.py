"""The demo run by ``make demo``: the main job on the radiographs bundled with the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from osteolens import RESEARCH_NOTICE


def sample_dir() -> Path:
    """The folder of bundled BTXRD sample radiographs (dataset.csv, images/, masks/)."""
    return Path(str(resources.files("osteolens") / "samples" / "btxrd"))


def run_demo(out: str | Path, console=None) -> dict:
    """Import the bundled samples into a manifest, verify every case and summarise it.

    Args:
        out: output folder.
        console: a Rich console to print to (``None`` prints nothing).

    Returns:
        dict with the output folder, the manifest path, the dataset summary and the verify counts.
    """
    from osteolens.data.importers import import_btxrd
    from osteolens.data.summary import summarize_manifest
    from osteolens.data.verify import verify_manifest

    out = Path(out)
    imported = import_btxrd(sample_dir(), out / "samples")
    report = verify_manifest(imported.manifest)
    summary = summarize_manifest(imported.manifest)
    if console is not None:
        console.print(f"[bold]{RESEARCH_NOTICE}[/]")
        console.print(f"imported {summary['n_cases']} bundled BTXRD radiographs into {imported.manifest_path}")
        console.print(f"labels: {summary['label']}; centres: {summary['centre']}")
        console.print(f"verify: {report.n_cases} cases read, problems: {report.counts() or 'none'}")
    return {"out": str(out), "manifest": str(imported.manifest_path), "summary": summary, "verify": report.counts()}
