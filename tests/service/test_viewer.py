"""The web viewer in a real browser: Debian's Chromium driven by Playwright (no browser download)."""

import os
import shutil
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import KEY

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        message = "Debian's chromium is not installed (make test installs it with apt-get)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def test_upload_view_toggle_and_download(browser, server, btxrd_dir, tmp_path):  # noqa: F811
    page = browser.new_page(accept_downloads=True)
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(server + "/")
    assert "research use only" in page.inner_text("#notice")
    assert page.is_hidden("#result")  # no empty result panel before an analysis
    page.fill("#key", KEY)
    page.set_input_files("#file", str(btxrd_dir / "images" / "IMG000004.png"))
    page.fill("#age", "52")
    page.select_option("#sex", "M")
    page.click("#analyse")
    page.wait_for_selector("#result:not([hidden])", timeout=30000)
    assert page.inner_text("#status").startswith("analysed IMG000004.png")
    p = [float(page.inner_text(f"#p-{k}").rstrip("%")) for k in ("normal", "benign", "malignant")]
    assert abs(sum(p) - 100) < 0.3
    size = page.evaluate("[document.getElementById('canvas').width, document.getElementById('canvas').height]")
    assert size == [256, 256]
    with_mask = page.evaluate("document.getElementById('canvas').toDataURL()")
    page.check("#show-heat")
    with_heat = page.evaluate("document.getElementById('canvas').toDataURL()")
    assert with_heat != with_mask  # the heat map changed the picture
    page.screenshot(path=str(tmp_path / "viewer.png"), full_page=True)
    with page.expect_download() as info:
        page.click("#download-report")
    report = Path(info.value.path()).read_text()
    assert "research use only" in report and "osteolens analysis" in report
    # reopen by id
    analysis_id = page.inner_text("#shown-id")
    page.fill("#analysis-id", analysis_id)
    page.click("#open-button")
    page.wait_for_function("document.getElementById('status').textContent === 'opened'")
    page.click("#delete")  # the upload holds patient data: the user can remove it
    page.wait_for_function(f"document.getElementById('status').textContent === 'deleted {analysis_id}'")
    assert page.is_hidden("#result")
    page.click("#open-button")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('404: no analysis')")
    # everything came from this server: the viewer works offline
    assert all(u.startswith(server) or u.startswith("blob:") or u.startswith("data:") for u in requests)
    page.close()


def test_two_views_are_read_together(browser, server, btxrd_dir):  # noqa: F811
    """Two radiographs analysed on the page, read as one study: the server's reading is shown; deleting one takes it
    off the list."""
    page = browser.new_page()
    page.goto(server + "/")
    assert page.is_hidden("#session")
    page.fill("#key", KEY)
    ids = []
    for name in ("IMG000004.png", "IMG000005.png"):
        page.set_input_files("#file", str(btxrd_dir / "images" / name))
        page.select_option("#laterality", "L")
        page.click("#analyse")
        page.wait_for_function(f"document.getElementById('status').textContent.startsWith('analysed {name}')")
        ids.append(page.inner_text("#shown-id"))
    assert page.locator("input.together").count() == 2
    page.click("#read-together")
    page.wait_for_function("document.getElementById('status').textContent === 'read 2 view(s) together'")
    assert page.inner_text("#study-images") == "IMG000004.png, IMG000005.png"
    assert page.inner_text("#study-anatomy") == "L"
    assert page.is_hidden("#study-sr")  # PNG uploads have no DICOM study to write an SR into
    assert page.inner_text("#session-list tr:nth-child(2) td:nth-child(3)") == "L"
    body = httpx.post(server + "/v1/studies", json={"analyses": ids}, headers={"X-API-Key": KEY}).json()
    assert page.inner_text("#study-decision") == body["decision"]
    assert page.inner_text("#study-probs") == " / ".join(f"{100 * body[k]:.1f}%" for k in ("p_normal", "p_benign", "p_malignant"))
    page.click("#delete")
    page.wait_for_function(f"document.getElementById('status').textContent === 'deleted {ids[1]}'")
    assert page.locator("input.together").count() == 1
    page.close()


def test_a_tumour_call_with_nothing_outlined_says_so(browser, server, btxrd_dir):  # noqa: F811
    """The lesion list of a real analysis, shown again as a tumour call with no lesion (what the shipped model gives
    IMG001151, an osteochondroma, tested with the report) and as a normal one: the first says nothing was
    outlined, in the HTML report's words; the second says none."""
    from osteolens.reporting.html import NO_OUTLINE

    page = browser.new_page()
    page.goto(server + "/")
    page.fill("#key", KEY)
    page.set_input_files("#file", str(btxrd_dir / "images" / "IMG001151.png"))
    page.click("#analyse")
    page.wait_for_selector("#result:not([hidden])", timeout=30000)
    page.evaluate("show({...state.analysis, label: 'benign', lesions: []})")
    assert page.inner_text("#lesions") == NO_OUTLINE and page.inner_text("#decision") == "benign"
    page.evaluate("show({...state.analysis, label: 'normal', lesions: []})")
    assert page.inner_text("#lesions") == "none"
    page.close()


def test_dicom_upload_offers_dicom_downloads(browser, server, btxrd_dir, tmp_path):  # noqa: F811
    import pydicom

    from osteolens.io.dicom_write import image_to_dicom

    src = image_to_dicom(btxrd_dir / "images" / "IMG000001.png", tmp_path / "study.dcm", pixel_spacing_mm=0.3,
                         patient_age="048Y", patient_sex="F", body_part="PELVIS")
    page = browser.new_page(accept_downloads=True)
    page.goto(server + "/")
    page.fill("#key", KEY)
    page.set_input_files("#file", str(src))
    page.select_option("#sex", "M")  # typed in the form: wins over the header's F
    page.click("#analyse")
    page.wait_for_selector("#dicom-downloads:not([hidden])", timeout=30000)
    assert page.inner_text("#clinical") == ("age 48 (DICOM Patient's Age '048Y'); sex M (upload form); "
                                            "region pelvis (DICOM Body Part Examined 'PELVIS'); not given: view")
    assert "mm²" in page.inner_text("#area")
    long_axis, short_axis = (float(v) for v in page.inner_text("#size").removesuffix(" mm").split(" x "))
    assert long_axis >= short_axis > 0  # IMG000001's lesion, measured in the file's 0.3-mm pixels
    lesions = page.evaluate("state.analysis.lesions")  # each lesion listed, most likely first
    shown = [item.split(": ") for item in page.inner_text("#lesions").split("; ")]
    assert [int(k) for k, _ in shown] == list(range(1, len(lesions) + 1))
    for (_, text), one in zip(shown, lesions):  # to the 0.1 mm shown (JavaScript rounds a tie up)
        assert [float(v) for v in text.removesuffix(" mm").split(" x ")] == pytest.approx(
            [one["long_axis_mm"], one["short_axis_mm"]], abs=0.051)
    assert max(one["long_axis_mm"] for one in lesions) >= long_axis
    with page.expect_download() as info:
        page.click("#download-seg")
    seg = pydicom.dcmread(info.value.path())
    assert seg.Modality == "SEG" and seg.StudyInstanceUID == pydicom.dcmread(src).StudyInstanceUID
    with page.expect_download() as info:  # the presentation state that draws the lesions on the radiograph
        page.click("#download-pr")
    pr = pydicom.dcmread(info.value.path())
    assert pr.Modality == "PR" and len(pr.GraphicAnnotationSequence[0].GraphicObjectSequence) == len(lesions)
    # a second view of that study: the two read together go back as one SR in the study
    uid = pydicom.dcmread(src).StudyInstanceUID
    second = image_to_dicom(btxrd_dir / "images" / "IMG000001.png", tmp_path / "second.dcm", patient_age="048Y",
                            patient_sex="F", body_part="PELVIS", study_uid=uid, patient_id=pydicom.dcmread(src).PatientID)
    page.set_input_files("#file", str(second))
    page.click("#analyse")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('analysed second.dcm')")
    page.click("#read-together")
    page.wait_for_function("document.getElementById('status').textContent === 'read 2 view(s) together'")
    with page.expect_download() as info:
        page.click("#study-sr")
    sr = pydicom.dcmread(info.value.path())
    assert sr.Modality == "SR" and sr.StudyInstanceUID == uid and len(sr.CurrentRequestedProcedureEvidenceSequence[0]
                                                                        .ReferencedSeriesSequence) == 2
    page.close()


def test_wrong_key_is_shown(browser, server, btxrd_dir):  # noqa: F811
    page = browser.new_page()
    page.goto(server + "/")
    page.fill("#key", "nope")
    page.set_input_files("#file", str(btxrd_dir / "images" / "IMG000001.png"))
    page.click("#analyse")
    page.wait_for_function("document.getElementById('status').className === 'error'")
    assert "401" in page.inner_text("#status")
    page.close()
