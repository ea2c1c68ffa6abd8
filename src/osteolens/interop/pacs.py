"""A PACS client for Orthanc: DICOMweb (QIDO-RS, WADO-RS, STOW-RS) and Orthanc's change feed.

- :func:`analyze_study` pulls a study's radiographs (CR, DX; single-frame images), analyses
  them and pushes the SEG, SR and overlay secondary capture back into the same study.
- :func:`watch` follows Orthanc's ``/changes`` feed and analyses each new stable study once.
  Its state file (last change seen, studies done) is rewritten atomically after every study,
  so a restart neither re-analyses nor loses a study; a failing study is retried a bounded
  number of times, then recorded as failed.

Example:
    >>> analyze_study("http://127.0.0.1:8042", "1.2.3...", work="work/pacs")   # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from osteolens.errors import OsteolensError
from osteolens.io.atomic import replaced_atomically
from osteolens.io.dicom_write import OUTPUT_FILES

log = logging.getLogger("osteolens.pacs")
RADIOGRAPH_MODALITIES = ("CR", "DX", "RG")
MAX_RETRY_WAIT_S = 60.0  # the longest pause between tries while Orthanc cannot be reached


def _client(url: str, auth: tuple[str, str] | None = None, dicomweb_root: str = "/dicom-web"):
    import requests
    from dicomweb_client.api import DICOMwebClient

    session = requests.Session()
    if auth:
        session.auth = auth
    return DICOMwebClient(url=url.rstrip("/") + dicomweb_root, session=session, timeout=60)


def analyze_study(url: str, study_uid: str, work: str | Path | None = None, model="osteolens-radiograph",
                  auth: tuple[str, str] | None = None) -> dict:
    """Analyse the radiographs of one study and store the results back into it.

    Args:
        url: the PACS base URL (Orthanc: ``http://host:8042``; DICOMweb under ``/dicom-web``).
        study_uid: Study Instance UID.
        work: working folder (default: a temporary one).
        model: model name, folder or loaded model.
        auth: optional HTTP basic credentials.

    Returns:
        dict with the study, the analysed instances, the stored SOP instance UIDs, each image's label and
        ``study_readings``: the ``studies.csv`` rows of the study's radiographs read together, one per body part
        and side (empty when there are none).

    Raises:
        OsteolensError: the study does not exist or cannot be read.
    """
    import pydicom

    from osteolens.inference.analyze import analyze
    from osteolens.models.registry import LoadedModel, load_model

    client = _client(url, auth)
    try:
        series = client.search_for_series(study_instance_uid=study_uid)
    except Exception as exc:
        raise OsteolensError(f"{url}: cannot search study {study_uid}: {exc}") from exc
    if not series:
        raise OsteolensError(f"{url}: study {study_uid} not found or empty")
    work = Path(work) if work else Path(tempfile.mkdtemp(prefix="osteolens-pacs-"))
    inputs = work / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    files = []
    for s in series:
        modality = (s.get("00080060", {}).get("Value") or [""])[0]
        if modality not in RADIOGRAPH_MODALITIES:
            continue
        series_uid = s["0020000E"]["Value"][0]
        for ds in client.retrieve_series(study_uid, series_uid):
            if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
                continue
            path = inputs / f"{ds.SOPInstanceUID}.dcm"
            ds.save_as(path, enforce_file_format=True)
            files.append(path)
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    readings: list = []  # the study's views read together (osteolens.inference.study)
    results = analyze(files, work / "results", model=loaded, dicom_out=True, studies=readings) if files else []
    stored = []
    for path, res in zip(files, results):
        if res.status != "ok" or res.error:  # an ok row's error: its DICOM outputs could not be written
            log.warning("study %s: nothing stored for one instance: %s", study_uid, res.error)
            continue
        objects = [pydicom.dcmread(work / "results" / "dicom" / path.stem / name) for name in OUTPUT_FILES]
        client.store_instances(objects, study_instance_uid=study_uid)
        stored += [o.SOPInstanceUID for o in objects]
    for reading in readings:  # the views read together: one SR for the study (two or more radiographs)
        if reading.sr_file:
            obj = pydicom.dcmread(work / "results" / reading.sr_file)
            client.store_instances([obj], study_instance_uid=study_uid)
            stored.append(obj.SOPInstanceUID)
    log.info("study analysed: %d radiograph(s), %d object(s) stored", len(files), len(stored))
    return {"study": study_uid, "analysed": [p.stem for p in files], "stored": stored,
            "labels": [r.label for r in results if r.status == "ok"],
            "study_readings": [r.row() for r in readings if r.study == study_uid]}


@dataclass
class WatchState:
    """What :func:`watch` has done: the last change read and the studies finished or failed."""

    last_change: int = 0
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "WatchState":
        if not path.is_file():
            return cls()
        try:
            return cls(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as exc:
            raise OsteolensError(f"{path}: unreadable watch state ({exc}); move it away to start afresh") from exc

    def save(self, path: Path) -> None:
        with replaced_atomically(path) as tmp:
            tmp.write_text(json.dumps(self.__dict__, indent=2))


def _orthanc_study_uid(session, url: str, orthanc_id: str) -> str | None:
    r = session.get(f"{url}/studies/{orthanc_id}", timeout=30)
    if r.status_code != 200:
        return None
    return r.json().get("MainDicomTags", {}).get("StudyInstanceUID")


def _needs_analysis(session, url: str, orthanc_id: str) -> bool:
    """True when the study has radiographs and no osteolens output yet (from any earlier run)."""
    from osteolens.io.dicom_write import MANUFACTURER

    r = session.get(f"{url}/studies/{orthanc_id}/series", timeout=30)
    if r.status_code != 200:
        return False
    tags = [s.get("MainDicomTags", {}) for s in r.json()]
    has_radiograph = any(t.get("Modality") in RADIOGRAPH_MODALITIES for t in tags)
    analysed = any(t.get("Manufacturer") == MANUFACTURER and t.get("Modality") in ("SEG", "SR") for t in tags)
    return has_radiograph and not analysed


def watch(url: str, state_file: str | Path, work: str | Path, model="osteolens-radiograph", once: bool = False,
          poll_seconds: float = 2.0, retries: int = 3, auth: tuple[str, str] | None = None, max_seconds: float | None = None) -> WatchState:
    """Follow Orthanc's change feed and analyse each new stable study once.

    Args:
        url: Orthanc's base URL.
        state_file: JSON state (created if missing); survives restarts.
        work: working folder.
        model: model name, folder or loaded model (loaded once).
        once: process the changes present now, then return.
        poll_seconds: wait between polls when there is nothing new.
        retries: attempts per study before it is recorded as failed.
        auth: optional HTTP basic credentials.
        max_seconds: stop after this long (for bounded runs).

    Returns:
        The final state.

    Raises:
        OsteolensError: the first read of the change feed fails (wrong URL or credentials), or
            any read fails with ``once``. Once the feed has been read, a failure (Orthanc
            restarting, the network down) is logged and retried, waiting twice as long each
            time up to :data:`MAX_RETRY_WAIT_S`; changes already seen are not read again.
    """
    import requests

    from osteolens.models.registry import LoadedModel, load_model

    url = url.rstrip("/")
    state_file = Path(state_file)
    state = WatchState.load(state_file)
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    session = requests.Session()
    if auth:
        session.auth = auth
    started = time.monotonic()
    polled, pause = False, poll_seconds
    while True:
        try:
            r = session.get(f"{url}/changes", params={"since": state.last_change, "limit": 100}, timeout=30)
            r.raise_for_status()
            feed = r.json()
            for change in feed.get("Changes", []):
                if change.get("ChangeType") == "StableStudy":
                    study = _orthanc_study_uid(session, url, change["ID"])
                    if study and study not in state.done and study not in state.failed and _needs_analysis(session, url, change["ID"]):
                        _analyse_with_retries(url, study, Path(work) / study, loaded, retries, state, auth)
                state.last_change = int(change["Seq"])
                state.save(state_file)
        except (requests.RequestException, ValueError) as exc:
            if once or not polled:  # a wrong URL or credentials: say so at once
                raise OsteolensError(f"{url}: cannot read the change feed: {exc}") from exc
            if max_seconds is not None and time.monotonic() - started > max_seconds:
                return state
            # Orthanc restarting, or the network down for a while: a watcher keeps watching
            log.warning("watch: cannot read the change feed (%s); trying again in %.0f s", exc, pause)
            time.sleep(pause)
            pause = min(2 * pause, MAX_RETRY_WAIT_S)
            continue
        polled, pause = True, poll_seconds
        state.last_change = max(state.last_change, int(feed.get("Last", state.last_change)))
        state.save(state_file)
        if feed.get("Done", True) and (once or (max_seconds is not None and time.monotonic() - started > max_seconds)):
            return state
        if feed.get("Done", True):
            time.sleep(poll_seconds)


def _analyse_with_retries(url, study, work, model, retries, state: WatchState, auth) -> None:
    for attempt in range(1, retries + 1):
        try:
            result = analyze_study(url, study, work, model, auth)
            state.done.append(study)
            log.info("watch: study done (%d radiograph(s)) [%d/%d attempts]", len(result["analysed"]), attempt, retries)
            return
        except Exception as exc:  # a bad study must not stop the watcher
            log.warning("watch: study attempt %d/%d failed: %s", attempt, retries, exc)
            if attempt == retries:
                state.failed[study] = str(exc)
            else:
                time.sleep(min(2.0 * attempt, 10.0))
