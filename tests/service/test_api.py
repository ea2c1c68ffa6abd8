from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.service.conftest import KEY


def post(base, path, key=KEY, **fields):
    files = {"file": (path.name, path.read_bytes())}
    return httpx.post(base + "/v1/analyses", files=files, data=fields, headers={"X-API-Key": key} if key else {}, timeout=60)


def test_health_needs_no_key_but_analyses_do(server, btxrd_dir):
    r = httpx.get(server + "/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok" and "research use only" in r.json()["notice"]
    img = btxrd_dir / "images" / "IMG000001.png"
    assert post(server, img, key=None).status_code == 401
    assert post(server, img, key="wrong").status_code == 401
    assert httpx.get(server + "/v1/analyses/" + "0" * 32).status_code == 401


def test_analysis_round_trip(server, btxrd_dir):
    r = post(server, btxrd_dir / "images" / "IMG000001.png", age="48", sex="F", region="pelvis", view="frontal")
    assert r.status_code == 201, r.text
    body = r.json()
    assert abs(body["p_normal"] + body["p_benign"] + body["p_malignant"] - 1) < 1e-5
    assert body["clinical_missing"] == [] and "input" not in body and "research use only" in body["notice"]
    h = {"X-API-Key": KEY}
    again = httpx.get(server + body["links"]["self"], headers=h).json()
    assert again["p_malignant"] == body["p_malignant"]
    mask = httpx.get(server + body["links"]["mask"], headers=h)
    assert mask.headers["content-type"] == "image/png"
    import io

    assert np.asarray(Image.open(io.BytesIO(mask.content))).shape == (256, 256)
    assert httpx.get(server + body["links"]["overlay"], headers=h).status_code == 200
    report = httpx.get(server + body["links"]["report"], headers=h).text  # written on first request
    assert "research use only" in report and "data:image/png;base64," in report and body["label"] in report
    assert httpx.get(server + body["links"]["report"], headers=h).text == report
    assert httpx.get(server + "/v1/analyses/" + "f" * 32, headers=h).status_code == 404
    # the site stands in for a region not given: the same answer as with the region
    by_site = post(server, btxrd_dir / "images" / "IMG000001.png", age="48", sex="F", site="hip bone", view="frontal")
    assert by_site.status_code == 201 and by_site.json()["clinical_missing"] == []
    assert by_site.json()["p_malignant"] == body["p_malignant"]


def test_bad_inputs_get_4xx_and_service_keeps_serving(server, tmp_path, btxrd_dir):
    text = tmp_path / "notes.png"
    text.write_text("patient notes")
    r = post(server, text)
    assert r.status_code == 400 and "not a supported image" in r.json()["detail"] and str(tmp_path) not in r.json()["detail"]
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (800, 800, 3), dtype=np.uint8)).save(big)
    assert big.stat().st_size > 1024 * 1024
    assert post(server, big).status_code == 413
    assert httpx.post(server + "/v1/analyses", headers={"X-API-Key": KEY}, data={"age": "3"}).status_code == 422
    blank = tmp_path / "blank.png"
    Image.fromarray(np.zeros((300, 300), np.uint8)).save(blank)
    r = post(server, blank)
    assert r.status_code == 400 and r.json()["detail"] == "blank.png: image is blank (every pixel has the same value)"
    from tests.io.test_images import png_claiming

    r = post(server, png_claiming(tmp_path / "bomb.png", 21_000, 20_000))  # 420 megapixels in 100 bytes
    assert r.status_code == 400 and "bomb.png: image is 21000 x 20000 px (420 megapixels)" in r.json()["detail"]
    from tests.conftest import shared

    ct = sorted((shared("sts_ct_mr_pet") / "dicom" / "STS_001" / "CT" / "image").glob("*.dcm"))[0]
    r = post(server, ct)  # a real CT slice: no radiograph answer
    assert r.status_code == 400 and "a CT image (DICOM Modality CT), not a projection radiograph" in r.json()["detail"]
    bad_age = post(server, btxrd_dir / "images" / "IMG000004.png", age="300")
    assert bad_age.status_code == 400 and "age" in bad_age.json()["detail"]
    for name in ("..", "."):  # a file name that is a folder's: it was written as the folder itself (500)
        r = httpx.post(server + "/v1/analyses", files={"file": (name, (btxrd_dir / "images" / "IMG000004.png").read_bytes())},
                       headers={"X-API-Key": KEY}, timeout=60)
        assert r.status_code == 201 and r.json()["image"] == "upload"
    assert httpx.get(server + "/healthz").status_code == 200


def test_a_dicom_whose_header_cannot_carry_outputs_is_still_answered(server, tmp_path, btxrd_dir):
    """The service writes DICOM objects for every DICOM upload; a radiograph without a Study Instance UID cannot
    have them, and was refused with a 400 although its pixels read. It now gets its analysis (201), no DICOM
    links, and an error field naming the upload (not where the server keeps it) and what its header lacks."""
    from tests.io.test_dicom import make_dicom

    pixels = np.asarray(Image.open(btxrd_dir / "images" / "IMG000004.png")).astype(np.uint16) * 16
    r = post(server, make_dicom(tmp_path / "no_study.dcm", pixels))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "ok" and abs(body["p_normal"] + body["p_benign"] + body["p_malignant"] - 1) < 1e-5
    assert body["error"] == ("analysed, but its DICOM outputs were not written: no_study.dcm: has no StudyInstanceUID, "
                             "SeriesInstanceUID, so DICOM outputs cannot join its study; they need the file's "
                             "header fixed")
    assert not any(k.startswith("dicom_") for k in body["links"])
    assert httpx.get(server + body["links"]["mask"], headers={"X-API-Key": KEY}).status_code == 200


def test_concurrent_requests_do_not_mix(server, btxrd_dir):
    names = ["IMG000001", "IMG000004", "IMG000005", "IMG000006"] * 2
    single = {n: post(server, btxrd_dir / "images" / f"{n}.png").json()["p_malignant"] for n in set(names)}
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda n: (n, post(server, btxrd_dir / "images" / f"{n}.png")), names))
    for n, r in results:
        assert r.status_code == 201 and r.json()["image"] == f"{n}.png"
        assert r.json()["p_malignant"] == pytest.approx(single[n], abs=1e-9)
    assert len({r.json()["id"] for _, r in results}) == len(names)


def test_analyses_already_made_are_read_together_as_one_study(server, btxrd_dir):
    import pandas as pd

    from osteolens.inference.study import mean_log_probability

    h = {"X-API-Key": KEY}
    views = [post(server, btxrd_dir / "images" / n, age="52", sex="M", site="foot", laterality="L").json()
             for n in ("IMG000004.png", "IMG000005.png")]
    r = httpx.post(server + "/v1/studies", json={"analyses": [v["id"] for v in views], "study": "exam-1"}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    expected = mean_log_probability(pd.DataFrame(views)[["p_normal", "p_benign", "p_malignant"]].to_numpy(float))
    assert np.allclose([body["p_normal"], body["p_benign"], body["p_malignant"]], expected, atol=1e-6)
    assert body["study"] == "exam-1" and body["images"] == ["IMG000004.png", "IMG000005.png"]
    assert (body["laterality"], body["body_part"]) == ("L", "foot")
    assert body["analyses"] == [v["id"] for v in views] and "research use only" in body["notice"]
    one = httpx.post(server + "/v1/studies", json={"analyses": [views[0]["id"]]}, headers=h).json()
    assert one["p_malignant"] == pytest.approx(views[0]["p_malignant"], abs=1e-6) and one["label"] == views[0]["label"]
    # bad requests name the problem; the service keeps serving
    missing = httpx.post(server + "/v1/studies", json={"analyses": [views[0]["id"], "f" * 32]}, headers=h)
    assert missing.status_code == 404 and "f" * 32 in missing.json()["detail"]
    twice = httpx.post(server + "/v1/studies", json={"analyses": [views[0]["id"]] * 2}, headers=h)
    assert twice.status_code == 422 and "twice" in twice.json()["detail"]
    # a comparison film of the other foot is not averaged into the tumour's views
    other = post(server, btxrd_dir / "images" / "IMG001869.png", age="52", sex="M", site="foot", laterality="right").json()
    mixed = httpx.post(server + "/v1/studies", json={"analyses": [views[0]["id"], other["id"]]}, headers=h)
    assert mixed.status_code == 422 and mixed.json()["detail"] == (
        "views of different body parts or sides are not read together (IMG000004.png: L foot; IMG001869.png: R foot)")
    side = post(server, btxrd_dir / "images" / "IMG000004.png", laterality="up")
    assert side.status_code == 400 and "laterality 'up' names no side" in side.json()["detail"]
    assert httpx.post(server + "/v1/studies", json={"analyses": []}, headers=h).status_code == 422
    assert httpx.post(server + "/v1/studies", json={"analyses": [views[0]["id"]]}).status_code == 401
    assert httpx.get(server + "/healthz").status_code == 200


def test_scores_route(server):
    h = {"X-API-Key": KEY}
    r = httpx.post(server + "/v1/scores/mirels", headers=h,
                   json={"site": "peritrochanteric", "pain": "functional", "lesion": "lytic", "size": "over_two_thirds"})
    assert r.status_code == 200 and r.json()["total"] == 12 and r.json()["category"] == "high"
    r = httpx.post(server + "/v1/scores/sins", headers=h, json={"location": "T12", "pain": "mechanical", "lesion": "lytic",
                                                                 "alignment": "normal", "collapse": "under_50_percent",
                                                                 "posterolateral": "unilateral"})
    assert r.json()["total"] == 11 and r.json()["category"] == "indeterminate"
    bad = httpx.post(server + "/v1/scores/mirels", headers=h, json={"site": "skull", "pain": "mild", "lesion": "lytic",
                                                                     "size": "under_one_third"})
    assert bad.status_code == 422 and "site 'skull'" in bad.json()["detail"]
    assert httpx.post(server + "/v1/scores/mirels", headers=h, json={"site": "upper_limb"}).status_code == 422
    assert httpx.post(server + "/v1/scores/nope", headers=h, json={}).status_code == 404
    assert httpx.post(server + "/v1/scores/mirels", json={}).status_code == 401
    assert httpx.get(server + "/healthz").status_code == 200  # still serving


def test_a_client_deletes_its_analysis_and_the_upload_goes_with_it(server, btxrd_dir):
    h = {"X-API-Key": KEY}
    body = post(server, btxrd_dir / "images" / "IMG000001.png").json()
    url = server + body["links"]["self"]
    assert httpx.delete(url).status_code == 401
    assert httpx.delete(url, headers=h).status_code == 204
    gone = httpx.get(url, headers=h)
    assert gone.status_code == 404 and "deleted 24 h after" in gone.json()["detail"]
    assert httpx.get(server + body["links"]["mask"], headers=h).status_code == 404
    assert httpx.delete(url, headers=h).status_code == 404


def test_analyses_older_than_the_retention_are_deleted(tiny_model, btxrd_dir, tmp_path, monkeypatch):
    """Uploads hold patient data: the service keeps them ``keep_hours``, then deletes them, at start and as it runs."""
    import json
    import os
    import time

    from osteolens.service import app as service

    store = tmp_path / "store"
    stale = store / ("c" * 32)
    stale.mkdir(parents=True)
    (stale / "old.dcm").write_bytes(b"patient data")
    (stale / "old.json").write_text(json.dumps({"label": "normal"}))
    os.utime(stale / "old.json", (time.time() - 3 * 3600,) * 2)
    (store / "not-an-analysis").mkdir()  # only folders named like analysis ids are touched
    app = service.create_app(tiny_model, api_keys={KEY}, storage=store, keep_hours=2)
    assert not stale.exists() and (store / "not-an-analysis").is_dir()  # swept at start
    monkeypatch.setattr(service, "SWEEP_SECONDS", 0.0)  # then at most once a minute; here at every request
    h = {"X-API-Key": KEY}
    base, srv = service.serve_in_background(app)
    img = btxrd_dir / "images" / "IMG000001.png"
    old, new = (post(base, img).json()["id"] for _ in range(2))
    for f in (store / old).glob("*.json"):
        os.utime(f, (time.time() - 2.5 * 3600,) * 2)
    (store / old / "IMG000001_overlay.png").write_bytes(b"")  # asked for later: does not make the analysis younger
    assert httpx.get(f"{base}/v1/analyses/{new}", headers=h).status_code == 200
    r = httpx.get(f"{base}/v1/analyses/{old}", headers=h)
    assert r.status_code == 404 and "deleted 2 h after they are made" in r.json()["detail"]
    assert not (store / old).exists() and (store / new / "input" / "IMG000001.png").is_file()
    srv.should_exit = True
    forever = service.create_app(tiny_model, api_keys={KEY}, storage=store, keep_hours=0)
    for f in (store / new).glob("*.json"):
        os.utime(f, (0, 0))
    base, srv = service.serve_in_background(forever)
    assert httpx.get(f"{base}/v1/analyses/{new}", headers=h).status_code == 200
    srv.should_exit = True


def test_dicom_views_of_one_study_are_returned_as_one_study_sr(server, btxrd_dir, tmp_path):
    """Two DICOM uploads of one study (left foot): POST /v1/studies/sr gives the reading of /v1/studies as a valid SR
    in that study, naming both; anything else is a 422 that says why, and nothing is stored."""
    import highdicom as hd
    import pydicom

    from osteolens.io.dicom_write import image_to_dicom
    from tests.io.test_dicom_write import dciodvfy_errors

    h = {"X-API-Key": KEY}
    uid = "1.2.826.0.1.3680043.10.1.55"
    sources = [image_to_dicom(btxrd_dir / "images" / n, tmp_path / f"{n[:-4]}.dcm", patient_id="P-5", study_uid=uid,
                              body_part="FOOT", laterality="L") for n in ("IMG000004.png", "IMG000005.png")]
    views = [post(server, s).json() for s in sources]
    ids = [v["id"] for v in views]
    reading = httpx.post(server + "/v1/studies", json={"analyses": ids}, headers=h).json()
    assert reading["study"] == uid and (reading["laterality"], reading["body_part"]) == ("L", "FOOT")
    r = httpx.post(server + "/v1/studies/sr", json={"analyses": ids}, headers=h, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/dicom"
    (tmp_path / "study_sr.dcm").write_bytes(r.content)
    assert dciodvfy_errors(tmp_path / "study_sr.dcm") == []
    sr = hd.sr.srread(tmp_path / "study_sr.dcm")
    assert sr.StudyInstanceUID == uid and sr.PatientID == "P-5"
    group = sr.content.get_image_measurement_groups()[0]
    values = {m.name.meaning: m.value for m in group.get_measurements()}
    assert values["Probability of malignant bone tumour"] == pytest.approx(reading["p_malignant"], abs=1e-6)
    assert {s.referenced_sop_instance_uid for s in group.source_images} == \
        {pydicom.dcmread(s, stop_before_pixels=True).SOPInstanceUID for s in sources}
    # one view has its own SR; PNG uploads have no DICOM study; a name other than the views' study is refused
    one = httpx.post(server + "/v1/studies/sr", json={"analyses": ids[:1]}, headers=h)
    assert one.status_code == 422 and "its own SR" in one.json()["detail"]
    png = post(server, btxrd_dir / "images" / "IMG000004.png", site="foot", laterality="L").json()
    plain = httpx.post(server + "/v1/studies/sr", json={"analyses": [ids[0], png["id"]]}, headers=h)
    assert plain.status_code == 422 and f"analyses {png['id']} are not DICOM uploads" in plain.json()["detail"]
    renamed = httpx.post(server + "/v1/studies/sr", json={"analyses": ids, "study": "exam-1"}, headers=h)
    assert renamed.status_code == 422 and "not all of one DICOM study" in renamed.json()["detail"]
    assert httpx.post(server + "/v1/studies/sr", json={"analyses": ids}).status_code == 401
