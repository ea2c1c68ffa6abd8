"""A real Orthanc (Debian package) on loopback: upload, analyse a study, push results back, watch."""

import io
import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pydicom
import pytest

from osteolens.errors import OsteolensError
from osteolens.interop.pacs import WatchState, analyze_study, watch
from osteolens.io.dicom_write import image_to_dicom
from osteolens.service.app import free_port, wait_for_http

PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def start_orthanc(root, port=None):
    """A real Orthanc with the DICOMweb plugin, its database in ``root``; returns (process, url)."""
    exe = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    if not os.path.exists(exe) or not os.path.exists(PLUGIN):
        message = "Debian's orthanc and orthanc-dicomweb are not installed (make test installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    port = port or free_port()
    root.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "osteolens-test", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
        "HttpPort": port, "DicomPort": free_port(), "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "Plugins": [PLUGIN], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}, "StableAge": 1,
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    proc = subprocess.Popen([exe, str(root / "orthanc.json")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    if not wait_for_http(url + "/system", 10.0):
        proc.kill()
        pytest.fail("Orthanc did not start")
    return proc, url


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    proc, url = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def upload(url, tmp_path, btxrd_dir, name, patient):
    path = image_to_dicom(btxrd_dir / "images" / f"{name}.png", tmp_path / f"{name}.dcm", patient_id=patient, body_part="LEG")
    r = httpx.post(url + "/instances", content=path.read_bytes(), timeout=30)
    assert r.status_code == 200, r.text
    return pydicom.dcmread(path).StudyInstanceUID


def wait_until_stable(url, study_uid, timeout=30.0):
    """Block until Orthanc reports this study stable (StableAge 1 s), i.e. its StableStudy change is in the feed."""
    lookup = httpx.post(url + "/tools/lookup", content=study_uid, timeout=30).json()
    orthanc_id = next(item["ID"] for item in lookup if item["Type"] == "Study")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if httpx.get(url + f"/studies/{orthanc_id}", timeout=30).json().get("IsStable"):
            return
        time.sleep(0.25)
    pytest.fail(f"Orthanc never called study {study_uid} stable")


def series_modalities(url, study):
    r = httpx.get(url + f"/dicom-web/studies/{study}/series", timeout=30)
    return sorted(s["00080060"]["Value"][0] for s in r.json())


def test_analyze_study_round_trip(orthanc, tiny_model, btxrd_dir, tmp_path):
    study = upload(orthanc, tmp_path, btxrd_dir, "IMG000001", "P-1")
    result = analyze_study(orthanc, study, tmp_path / "work", model=tiny_model)
    assert len(result["analysed"]) == 1 and len(result["stored"]) == 4
    [reading] = result["study_readings"]  # one radiograph: the study reads as it does
    assert reading["study"] == study and reading["images"] == f"{result['analysed'][0]}.dcm"
    assert reading["label"] == result["labels"][0]
    assert series_modalities(orthanc, study) == ["CR", "OT", "PR", "SEG", "SR"]
    # the overlay (JPEG-LS lossless) decodes in the PACS: Orthanc renders it, as wide as the radiograph
    lookup = httpx.post(orthanc + "/tools/lookup", content=study, timeout=30).json()
    study_id = next(item["ID"] for item in lookup if item["Type"] == "Study")
    series = httpx.get(orthanc + f"/studies/{study_id}/series", timeout=30).json()
    sc_id = next(s["Instances"][0] for s in series if s["MainDicomTags"]["Modality"] == "OT")
    tags = httpx.get(orthanc + f"/instances/{sc_id}/simplified-tags", timeout=30).json()
    assert tags["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.7" and tags["Columns"] == "256"
    preview = httpx.get(orthanc + f"/instances/{sc_id}/preview", timeout=30)
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/png"
    from PIL import Image

    assert Image.open(io.BytesIO(preview.content)).size == (256, int(tags["Rows"]))


def test_two_views_of_a_study_get_its_reading_stored_as_one_sr(orthanc, btxrd_dir, tmp_path):
    """The shipped model on two real radiographs of one study: each view's four objects, and one more SR that reads
    the views together, go back into the study."""
    import highdicom as hd

    study = "1.2.826.0.1.3680043.10.1.99"
    for name in ("IMG000004", "IMG000005"):
        path = image_to_dicom(btxrd_dir / "images" / f"{name}.png", tmp_path / f"{name}.dcm", patient_id="P-3",
                              study_uid=study, body_part="FOOT", laterality="L")
        assert httpx.post(orthanc + "/instances", content=path.read_bytes(), timeout=30).status_code == 200
    result = analyze_study(orthanc, study, tmp_path / "work")
    [reading] = result["study_readings"]
    assert (reading["laterality"], reading["body_part"]) == ("L", "FOOT")
    sr = hd.sr.srread(tmp_path / "work" / "results" / reading["sr_file"])
    assert sr.content.get_image_measurement_groups()[0].tracking_identifier == "study reading L FOOT"
    assert len(result["analysed"]) == 2 and len(result["stored"]) == 9
    assert reading["n_images"] == 2 and reading["sr_file"] == "study_dicom/1_sr.dcm" and reading["label"] == "malignant"
    assert series_modalities(orthanc, study) == ["CR", "CR", "OT", "OT", "PR", "PR", "SEG", "SEG", "SR", "SR", "SR"]
    stored = httpx.get(orthanc + f"/dicom-web/studies/{study}/series", timeout=30).json()
    assert sum(s.get("0008103E", {}).get("Value", [""])[0].startswith("osteolens study reading") for s in stored) == 1


def test_watch_analyses_each_new_study_once_and_survives_restart(orthanc, tiny_model, btxrd_dir, tmp_path):
    state_file = tmp_path / "state.json"
    first = upload(orthanc, tmp_path, btxrd_dir, "IMG000004", "P-2")
    wait_until_stable(orthanc, first)
    state = watch(orthanc, state_file, tmp_path / "work", model=tiny_model, once=True)
    assert first in state.done and not state.failed
    assert len(state.done) == 1  # the study analysed by hand in the other test already has osteolens output
    assert series_modalities(orthanc, first) == ["CR", "OT", "PR", "SEG", "SR"]
    # a restart reads the same state and analyses nothing again
    wait_until_stable(orthanc, first)  # our own uploads made it unstable again
    again = watch(orthanc, state_file, tmp_path / "work", model=tiny_model, once=True)
    assert again.done.count(first) == 1
    assert series_modalities(orthanc, first) == ["CR", "OT", "PR", "SEG", "SR"]
    assert WatchState.load(state_file).last_change >= state.last_change


def test_watch_keeps_watching_while_orthanc_restarts(tiny_model, btxrd_dir, tmp_path):
    proc, url = start_orthanc(tmp_path / "pacs")
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(OsteolensError, match="cannot read the change feed"):  # a wrong address fails at once
        watch(f"http://127.0.0.1:{free_port()}", tmp_path / "nowhere.json", tmp_path / "work", model=tiny_model)
    state_file = tmp_path / "state.json"
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(watch, url, state_file, tmp_path / "work", model=tiny_model, poll_seconds=0.2, max_seconds=15)
        deadline = time.time() + 10
        while not state_file.exists() and time.time() < deadline:  # the feed has been read once
            time.sleep(0.1)
        proc.terminate()
        proc.wait(timeout=10)
        time.sleep(1.0)  # the watcher finds Orthanc gone and waits
        proc, _ = start_orthanc(tmp_path / "pacs", port)
        try:
            study = upload(url, tmp_path, btxrd_dir, "IMG000004", "P-3")
            state = running.result(timeout=60)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert state.done == [study] and not state.failed
