"""Radiomics for one case or a whole manifest, written to files with the settings beside them.

- one case: ``features.csv`` in long form (feature, ibsi_code, family, aggregation, value,
  missing_reason) and ``features.settings.json``;
- a manifest: ``features.csv`` with one row per case (``case_id, status, error`` then one column
  per feature value, named by :func:`~osteolens.radiomics.extract.wide_column`), a failing case
  being a row with its error, and ``features.settings.json``.

Example:
    >>> extract_case_to_csv("img.png", "mask.png", "out/features.csv")   # doctest: +SKIP
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import pandas as pd

from osteolens import RESEARCH_NOTICE, __version__
from osteolens.errors import OsteolensError
from osteolens.radiomics.extract import MIRP_VERSION, extract_features, to_wide
from osteolens.radiomics.settings import RadiomicsSettings


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes started fresh ('spawn'), never forked from this one.

    A forked child inherits the parent's objects but not its threads: an ONNX Runtime session
    (or an OpenMP pool) made earlier in the same process can then deadlock the child when it is
    freed, waiting on threads that do not exist there. This hung the test suite once, in the
    IBSI run after the analysis tests. Spawned workers import what they need and cost about a
    second each to start.
    """
    import multiprocessing

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def settings_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".settings.json")


def _write_settings(out: Path, settings: RadiomicsSettings, extra: dict) -> None:
    record = {"settings": settings.model_dump(), "engine": f"mirp {MIRP_VERSION} (Moran's I and Geary's C exact, by osteolens)",
              "osteolens": __version__, "notice": RESEARCH_NOTICE, **extra}
    settings_path(out).write_text(json.dumps(record, indent=2, default=str))


def extract_case_to_csv(image, mask, out: str | Path, settings: RadiomicsSettings | None = None,
                        roi: str | None = None) -> pd.DataFrame:
    """Features of one lesion to ``out`` (long CSV) and its settings JSON; returns the table."""
    table = extract_features(image, mask, settings, roi)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    used = settings or RadiomicsSettings.model_validate(table.attrs["settings"])
    _write_settings(out, used, {"image": str(image), "mask": str(mask), "roi": roi, "engine_notes": table.attrs.get("notes", [])})
    return table


def _batch_one(args):
    case_id, image, mask, settings_json = args
    settings = RadiomicsSettings.model_validate_json(settings_json)
    try:
        return case_id, "ok", "", to_wide(extract_features(image, mask, settings))
    except OsteolensError as exc:
        return case_id, "error", str(exc), {}


def extract_batch(cases: list[tuple[str, str, str]], settings: RadiomicsSettings, workers: int = 1,
                  progress=None) -> pd.DataFrame:
    """Features of many cases, one row each; a failing case is a row with its error, never a stop.

    Args:
        cases: ``(case_id, image, mask)`` triples.
        settings: one settings object for all cases.
        workers: processes (each imports the engine once).
        progress: optional callable ``(done, total)``.
    """
    jobs = [(c, str(i), str(m), settings.model_dump_json()) for c, i, m in cases]
    rows = []
    with worker_pool(workers) if workers > 1 else nullcontext() as pool:
        outputs = pool.map(_batch_one, jobs, chunksize=4) if pool else map(_batch_one, jobs)
        for k, out in enumerate(outputs, 1):
            rows.append(out)
            if progress:
                progress(k, len(jobs))
    return pd.DataFrame([{"case_id": c, "status": s, "error": e, **v} for c, s, e, v in rows])


def extract_manifest_to_csv(manifest: str | Path, out: str | Path, settings: RadiomicsSettings, workers: int = 1,
                            labels: list[str] | None = None, progress=None) -> pd.DataFrame:
    """Features of every case of a manifest that has a mask (optionally only some labels).

    Cases without a mask are listed as errors ("no mask"), so nothing is dropped silently.
    """
    from osteolens.data.manifest import load_manifest

    m = load_manifest(manifest)
    cases, missing = [], []
    for case in m.cases:
        if labels and case.label not in labels:
            continue
        if not case.mask:
            missing.append(case.case_id)
            continue
        cases.append((case.case_id, str(m.resolve(case.image)), str(m.resolve(case.mask))))
    table = extract_batch(cases, settings, workers, progress)
    if missing:
        table = pd.concat([table, pd.DataFrame({"case_id": missing, "status": "error", "error": "no mask in the manifest"})],
                          ignore_index=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    _write_settings(out, settings, {"manifest": str(manifest), "labels": labels, "cases": len(table),
                                    "failed": int((table.status != "ok").sum())})
    return table
