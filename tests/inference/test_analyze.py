import json
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from osteolens.cli import app
from osteolens.inference.analyze import PREDICTION_COLUMNS, analyze
from osteolens.volumes.measure import largest_lesion_axes


@pytest.fixture(scope="module")
def batch(tiny_model, btxrd_dir, tmp_path_factory):
    """Real radiographs in several forms, plus broken inputs."""
    d = tmp_path_factory.mktemp("inputs")
    src = np.asarray(Image.open(btxrd_dir / "images" / "IMG000004.png"))
    Image.open(btxrd_dir / "images" / "IMG000001.png").save(d / "a_plain.png")
    big = np.asarray(Image.fromarray(src).resize((300, 200)))
    Image.fromarray((big.astype(np.uint16) * 257)).save(d / "b_sixteen.png")
    Image.fromarray(np.stack([src] * 3, axis=2)).save(d / "c_colour.jpg", quality=92)
    from tests.io.test_dicom import make_dicom

    make_dicom(d / "d_radiograph.dcm", (src.astype(np.uint16) * 16), PixelSpacing=[0.5, 0.4])
    (d / "e_text.png").write_text("not an image")
    full = (d / "c_colour.jpg").read_bytes()
    (d / "f_truncated.jpg").write_bytes(full[: len(full) // 3])
    Image.fromarray(np.zeros((400, 300), np.uint8)).save(d / "g_blank.png")
    Image.fromarray(src[:, 100:106]).save(d / "h_sliver.png")
    Image.open(btxrd_dir / "masks" / "IMG000004.png").save(d / "i_mask.png")  # a tumour mask given as an image
    out = tmp_path_factory.mktemp("out")
    clinical = d / "clinical.csv"
    pd.DataFrame({"image": ["a_plain.png"], "age": [48], "sex": ["F"], "site": ["hip bone"], "region": ["pelvis"], "view": ["frontal"]}).to_csv(clinical, index=False)
    results = analyze([d / "a_plain.png", d, d / "missing.png"], out, model=tiny_model, clinical_csv=clinical)
    return d, out, results


def test_csv_contract(batch):
    d, out, results = batch
    table = pd.read_csv(out / "predictions.csv", dtype=str, keep_default_na=False)
    assert tuple(table.columns) == PREDICTION_COLUMNS
    # a_plain.png given twice (file and folder), nine folder files, one missing file
    assert len(table) == 11
    ok = table[table.status == "ok"]
    err = table[table.status == "error"]
    assert set(ok.image) == {"a_plain.png", "b_sixteen.png", "c_colour.jpg", "d_radiograph.dcm"}
    assert set(err.image) == {"e_text.png", "f_truncated.jpg", "g_blank.png", "h_sliver.png", "i_mask.png", "missing.png"}
    errors = err.set_index("image").error
    assert "truncated" in errors["f_truncated.jpg"]
    assert errors["g_blank.png"].endswith("g_blank.png: image is blank (every pixel has the same value)")
    assert "image is 6 x 256 px; a radiograph needs at least 64 px a side" in errors["h_sliver.png"]
    assert errors["i_mask.png"].endswith("i_mask.png: image has only two grey levels (0 and 255 of 255): a mask or a "
                                         "black-and-white picture, not a radiograph")
    assert "file not found" in err.set_index("image").loc["missing.png", "error"]
    for _, r in ok.iterrows():
        p = np.array([float(r.p_normal), float(r.p_benign), float(r.p_malignant)])
        assert abs(p.sum() - 1) < 1e-5 and r.label in ("normal", "benign", "malignant", "indeterminate")
        assert 0 <= float(r.uncertainty) <= 1
        for box in filter(None, r.boxes.split(";")):
            x0, y0, x1, y1 = map(int, box.split())
            assert 0 <= x0 < x1 and 0 <= y0 < y1
        scores = [float(v) for v in filter(None, r.box_scores.split(";"))]
        assert len(scores) == len(list(filter(None, r.boxes.split(";")))) and all(0 < v <= 1 for v in scores)
        assert (out / r["mask"]).is_file() and r["mask"].startswith(f"masks/{r.image.rsplit('.', 1)[0]}")
    # a_plain.png given twice: the mask column tells its two rows apart
    assert sorted(ok.loc[ok.image == "a_plain.png", "mask"]) == ["masks/a_plain.png", "masks/a_plain_1.png"]
    assert (err["mask"] == "").all() and (err.box_scores == "").all()
    dcm = ok.set_index("image").loc["d_radiograph.dcm"]
    assert dcm.lesion_area_mm2 != "" and float(dcm.lesion_area_mm2) == pytest.approx(float(dcm.lesion_area_px) * 0.2, abs=0.01)
    assert ok.set_index("image").loc["b_sixteen.png", "lesion_area_mm2"] == ""
    # the largest lesion's axes, from the mask written (these images are post-processed at their own size)
    d_mask = np.asarray(Image.open(out / "masks" / "d_radiograph.png")) > 0
    (long_px, short_px, ends), (long_mm, short_mm, _) = largest_lesion_axes(d_mask), largest_lesion_axes(d_mask, (0.5, 0.4))
    assert long_px > short_px > 0 and long_mm > short_mm > 0
    assert [float(dcm[c]) for c in ("lesion_long_axis_px", "lesion_short_axis_px", "lesion_long_axis_mm",
                                    "lesion_short_axis_mm")] == pytest.approx([long_px, short_px, long_mm, short_mm], abs=0.05)
    assert ok.set_index("image").loc["b_sixteen.png", "lesion_long_axis_mm"] == ""
    line = json.loads((out / "d_radiograph.json").read_text())["lesion_long_axis_line"]
    assert line == [ends[1], ends[0], ends[3], ends[2]] and d_mask[line[1], line[0]] and d_mask[line[3], line[2]]


def test_masks_overlays_json_and_report(batch):
    d, out, results = batch
    sizes = {"a_plain": (256, 256), "b_sixteen": (200, 300), "c_colour": (256, 256), "d_radiograph": (256, 256)}
    for stem, shape in sizes.items():
        mask = np.asarray(Image.open(out / "masks" / f"{stem}.png"))
        assert mask.shape == shape and set(np.unique(mask)) <= {0, 255}
        info = json.loads((out / f"{stem}.json").read_text())
        assert "research use only" in info["notice"] and info["model"]["name"] == "tiny-test-model"
        assert info["lesion_area_px"] == int((mask > 0).sum())
        assert (out / f"{stem}_overlay.png").is_file()
    a = json.loads((out / "a_plain.json").read_text())
    assert a["clinical_missing"] == []
    b = json.loads((out / "b_sixteen.json").read_text())
    assert set(b["clinical_missing"]) == {"age", "sex", "region", "view"}
    html = (out / "report.html").read_text()
    assert "research use only" in html and "Could not be analysed" in html
    assert html.count("data:image/png;base64") == 5  # a_plain.png twice, and the other three analysed
    assert "http://" not in html and "https://" not in html
    d = json.loads((out / "d_radiograph.json").read_text())  # its size in mm (the DICOM has a spacing), the PNG's in px
    assert f"{d['lesion_long_axis_mm']:.1f} x {d['lesion_short_axis_mm']:.1f} mm" in html
    assert f"{b['lesion_long_axis_px']:.0f} x {b['lesion_short_axis_px']:.0f} px (no pixel spacing)" in html


def test_a_batch_keeps_thumbnails_not_full_size_arrays(batch, tiny_model, btxrd_dir, tmp_path):
    """A full-size radiograph's arrays take about 100 MB: a batch that kept them all ran out of memory
    after a few hundred films. It keeps the report's thumbnail; ``keep_arrays`` keeps the rest."""
    d, out, results = batch
    ok = [r for r in results if r.status == "ok"]
    assert len(ok) == 5
    for r in ok:
        assert r.mask is r.saliency is r.grey is r.overlay is r.mask_probability is None
        assert r.thumbnail.dtype == np.uint8 and r.thumbnail.shape[2] == 3 and r.thumbnail.shape[0] >= 200
    kept = analyze([btxrd_dir / "images" / "IMG000004.png"], tmp_path, model=tiny_model, keep_arrays=True)[0]
    assert kept.mask.shape == kept.saliency.shape == kept.grey.shape == (256, 256)
    assert int(kept.mask.sum()) == kept.lesion_area_px


def test_cli_analyze(tiny_model, btxrd_dir, tmp_path):
    r = CliRunner().invoke(app, ["analyze", str(btxrd_dir / "images" / "IMG000001.png"), "--out", str(tmp_path / "o"), "--model", str(tiny_model)])
    assert r.exit_code == 0, r.output
    assert "1 analysed, 0 failed" in r.output and "research use only" in r.output


def test_folders_name_what_they_leave_out_and_skip_the_batch_s_own_output(tiny_model, btxrd_dir, tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    Image.open(btxrd_dir / "images" / "IMG000001.png").save(scans / "knee.png")
    Image.open(btxrd_dir / "images" / "IMG000001.png").save(scans / "knee_copy.gif")
    (scans / "notes.txt").write_text("request form")
    runner = CliRunner()
    args = ["analyze", str(scans), "--out", str(scans / "out"), "--model", str(tiny_model)]
    for _ in range(2):  # the second run must not read the first one's masks and overlays as radiographs
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
        assert "1 analysed, 0 failed" in r.output
        assert "left out 2 file(s)" in r.output and "knee_copy.gif" in r.output and "notes.txt" in r.output
    table = pd.read_csv(scans / "out" / "predictions.csv", dtype=str, keep_default_na=False)
    assert list(table.image) == ["knee.png"]
    # a later run into another folder leaves the earlier output out too: its overlays read as radiographs,
    # and its DICOM objects (SEG, SR, presentation state, overlay capture) as failed ones
    from pydicom.uid import generate_uid

    from tests.io.test_dicom import make_dicom

    make_dicom(scans / "knee.dcm", np.asarray(Image.open(scans / "knee.png")).astype(np.uint16) * 16,
               StudyInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid())
    analyze([scans / "knee.dcm"], scans / "out_dicom", model=tiny_model, dicom_out=True)
    assert len(list((scans / "out_dicom" / "dicom").rglob("*.dcm"))) == 4
    # a report beside the images, as a PACS export has them (suffix-less): left out as a DICOM object, not an error row
    shutil.copy(scans / "out_dicom" / "dicom" / "knee" / "sr.dcm", scans / "IM0002")
    # and one written as a bare dataset, without the file meta header (as older exporters write)
    import pydicom

    bare = pydicom.dcmread(scans / "IM0002")
    bare.file_meta, bare.preamble = pydicom.dataset.FileMetaDataset(), None
    bare.save_as(scans / "IM0003", implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert pydicom.misc.is_dicom(scans / "IM0003") is False  # no DICM preamble
    r = runner.invoke(app, ["analyze", str(scans), "--out", str(tmp_path / "elsewhere"), "--model", str(tiny_model)])
    assert r.exit_code == 0 and "2 analysed, 0 failed" in r.output, r.output
    assert "left out 2 folder(s) holding an earlier analysis's output" in r.output
    assert "left out 2 DICOM object(s) that are not images (Comprehensive 3D SR Storage: " in r.output
    r = runner.invoke(app, ["analyze", str(scans / "IM0002"), "--out", str(tmp_path / "given"), "--model", str(tiny_model)])
    assert "DICOM has no pixel data (Comprehensive 3D SR Storage)" in r.output  # given by its path: tried, and named
    table = pd.read_csv(tmp_path / "elsewhere" / "predictions.csv", dtype=str, keep_default_na=False)
    assert list(table.image) == ["knee.dcm", "knee.png"]

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("request form")
    r = runner.invoke(app, ["analyze", str(empty), "--out", str(tmp_path / "o"), "--model", str(tiny_model)])
    assert r.exit_code != 0 and not (tmp_path / "o" / "predictions.csv").exists()
    from osteolens.errors import OsteolensError

    with pytest.raises(OsteolensError, match=r"no radiographs to analyse in .*empty.*left out 1 file\(s\).*notes\.txt"):
        analyze([empty], tmp_path / "o2", model=tiny_model)
    assert not (tmp_path / "o2").exists()  # nothing written for a batch with nothing to read


def test_a_ct_slice_is_refused_and_a_dx_radiograph_is_read(tiny_model, btxrd_dir, tmp_path):
    """A real CT slice (Modality CT) gets an error row naming the modality, not a radiograph answer."""
    from tests.conftest import shared
    from tests.io.test_dicom import make_dicom

    ct = next(iter(sorted((shared("sts_ct_mr_pet") / "dicom" / "STS_001" / "CT" / "image").glob("*.dcm"))))
    src = np.asarray(Image.open(btxrd_dir / "images" / "IMG000004.png")).astype(np.uint16) * 16
    make_dicom(tmp_path / "dx.dcm", src)
    make_dicom(tmp_path / "mislabelled_mr.dcm", src, Modality="MR")
    results = analyze([ct, tmp_path / "dx.dcm", tmp_path / "mislabelled_mr.dcm"], tmp_path / "out", model=tiny_model)
    status = {r.image: (r.status, r.error) for r in results}
    assert status[ct.name][0] == "error" and "a CT image (DICOM Modality CT), not a projection radiograph" in status[ct.name][1]
    assert "osteolens volume report" in status[ct.name][1]
    assert status["dx.dcm"] == ("ok", "")
    assert status["mislabelled_mr.dcm"][0] == "error" and "an MR image (DICOM Modality MR)" in status["mislabelled_mr.dcm"][1]
    info = json.loads((tmp_path / "out" / "dx.json").read_text())
    assert info["input"]["properties"]["modality"] == "DX"


def test_mask_from_an_enlarged_view(tiny_model, btxrd_dir):
    """``calibration.mask_input_size`` reads the mask from a larger view; the classes are unchanged."""
    from osteolens.inference.analyze import analyze_image
    from osteolens.io.images import read_image
    from osteolens.models.registry import load_model

    model = load_model(tiny_model, threads=1)
    enlarged = replace(model, metadata={**model.metadata, "calibration": {**model.metadata["calibration"], "mask_input_size": 96}})
    arr, props = read_image(btxrd_dir / "images" / "IMG000004.png")
    base, big = analyze_image(model, arr, props), analyze_image(enlarged, arr, props)
    assert (base.p_normal, base.p_benign, base.p_malignant) == (big.p_normal, big.p_benign, big.p_malignant)
    assert big.mask_probability.shape == base.mask_probability.shape == arr.shape[:2]
    assert np.abs(big.mask_probability - base.mask_probability).max() > 1e-3


def test_second_look_refines_the_mask_inside_its_view_only(btxrd_dir):
    """``calibration.second_look`` re-reads the top lesion from a zoomed-in view; nothing else changes."""
    from osteolens.data.clinical import encode_clinical
    from osteolens.inference.analyze import analyze_image
    from osteolens.inference.postprocess import MaskPostprocess
    from osteolens.inference.second_look import lesion_view, view_probability
    from osteolens.io.images import read_image
    from osteolens.models.registry import load_model
    from osteolens.transforms.preprocess import network_grey

    shipped = load_model("osteolens-radiograph", threads=1)
    calib = {k: v for k, v in shipped.metadata["calibration"].items() if k != "second_look"}  # the first look alone
    model = replace(shipped, metadata={**shipped.metadata, "calibration": calib})
    settings = {"context": 3.0, "combine": "replace", "max_zoom": 4.0, "seed": MaskPostprocess.from_calibration(calib).to_dict()}
    looking = replace(model, metadata={**model.metadata, "calibration": {**calib, "second_look": settings}})
    arr, props = read_image(btxrd_dir / "images" / "IMG000004.png")  # an osteosarcoma of the foot
    clinical = {"age": 52, "sex": "M", "region": "lower limb", "view": "frontal"}
    first, second = analyze_image(model, arr, props, clinical), analyze_image(looking, arr, props, clinical)
    assert first.label != "normal" and (first.p_malignant, first.uncertainty) == (second.p_malignant, second.uncertainty)
    view = lesion_view(first.mask_probability, first.p_benign + first.p_malignant, MaskPostprocess(**settings["seed"]), 3.0, 4.0)
    assert view is not None
    x0, y0, x1, y1 = view
    assert 0 < (x1 - x0) * (y1 - y0) < arr.shape[0] * arr.shape[1] / 1.25 ** 2  # a zoomed-in part of the image
    outside = np.ones(arr.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(first.mask_probability[outside], second.mask_probability[outside])
    vec = np.stack([encode_clinical(52, "M", "lower limb", "frontal")[0]] * 2)
    assert first.content_box is None  # the network read the whole image
    expected = view_probability(model, network_grey(first.grey, model.image_size), view, arr.shape[:2], vec)
    assert np.allclose(second.mask_probability[y0:y1, x0:x1], expected, atol=1e-6)
    assert np.abs(expected - first.mask_probability[y0:y1, x0:x1]).max() > 0.05
    assert second.mask.shape == arr.shape[:2]


def test_inference_and_service_do_not_import_torch():
    """Importing torch costs about 2 s; a first analysis (or a service's first client) must not pay it."""
    import subprocess
    import sys

    code = ("import sys, osteolens.inference.analyze, osteolens.service.app, osteolens.inference.second_look; "
            "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_warm_up_analyses_a_synthetic_image_with_the_shipped_model():
    from osteolens.inference.analyze import warm_up
    from osteolens.models.registry import load_model

    model = load_model("osteolens-radiograph", threads=1)
    assert model.uses_clinical and warm_up(model) > 0  # clinical inputs missing: the model's neutral codes


def test_subtype_comes_from_the_more_likely_tumour_class(btxrd_dir):
    """An image flagged malignant by the sensitive threshold while its class head favours benign gets a benign subtype."""
    from osteolens.data.manifest import SUBTYPES
    from osteolens.inference.analyze import analyze_image
    from osteolens.io.images import read_image
    from osteolens.models.registry import load_model

    model = load_model("osteolens-radiograph", threads=1)
    seen = set()
    for name in ("IMG000031", "IMG000039"):  # BTXRD test-split images: benign-looking but flagged, clearly malignant
        arr, props = read_image(btxrd_dir / "images" / f"{name}.png")
        r = analyze_image(model, arr, props)
        assert r.label == "malignant"
        likely = "benign" if r.p_benign > r.p_malignant else "malignant"
        seen.add(likely)
        same_class = {n: p for n, p in r.subtype_probabilities.items() if SUBTYPES[n] == likely}
        assert SUBTYPES[r.subtype] == likely and r.subtype == max(same_class, key=same_class.get)
        assert r.p_subtype == pytest.approx(same_class[r.subtype] / sum(same_class.values()), abs=1e-5)
    assert seen == {"benign", "malignant"}


def assert_read_inside(framed, plain, x: int, y: int, shape: tuple[int, int]) -> None:
    """``framed`` (an analysis of ``plain``'s radiograph inside a frame at column ``x``, row ``y``) gives
    ``plain``'s answers exactly, with its boxes, mask, saliency and mask probability placed in the frame."""
    assert plain.label == framed.label and plain.label != "normal" and plain.boxes
    for field in ("p_normal", "p_benign", "p_malignant", "uncertainty", "lesion_area_px", "subtype"):
        assert getattr(framed, field) == getattr(plain, field), field
    assert framed.boxes == [[x0 + x, y0 + y, x1 + x, y1 + y] for x0, y0, x1, y1 in plain.boxes]
    assert [one["box"] for one in framed.lesions] == framed.boxes
    for moved, one in zip(framed.lesions, plain.lesions):  # sizes kept, places moved into the frame
        assert moved["area_px"] == one["area_px"] and moved["long_axis_px"] == one["long_axis_px"]
        assert moved["long_axis_line"] == [v + (x, y)[i % 2] for i, v in enumerate(one["long_axis_line"])]
        assert moved["outline"] == [[u + x, v + y] for u, v in one["outline"]]
    h, w = plain.mask.shape
    for layer in ("mask", "saliency", "mask_probability"):
        inside = getattr(framed, layer)
        assert inside.shape == shape and np.array_equal(inside[y:y + h, x:x + w], getattr(plain, layer)), layer
        assert not inside[:y].any() and not inside[:, :x].any(), layer


def test_a_padded_dicom_is_analysed_inside_its_padding(btxrd_dir, tmp_path):
    """Pixel Padding Value is not image: the network reads the radiograph inside the frame, and
    the results land in the frame's pixels. Without that, a 32-px black frame moved the held-out
    malignant AUC by -0.034 (benchmarks/radiograph_robustness.py, variant dicom_padded)."""
    from osteolens.inference.analyze import analyze_image
    from osteolens.io.images import read_image
    from osteolens.models.registry import load_model
    from tests.io.test_dicom import make_dicom

    model = load_model("osteolens-radiograph", threads=1)
    grey = np.asarray(Image.open(btxrd_dir / "images" / "IMG000004.png").convert("L")).astype(np.uint16) * 16
    framed = np.pad(grey, ((20, 12), (32, 40)), constant_values=4095)
    plain = analyze_image(model, *read_image(make_dicom(tmp_path / "plain.dcm", grey)))
    arr, props = read_image(make_dicom(tmp_path / "framed.dcm", framed, PixelPaddingValue=4095))
    padded = analyze_image(model, arr, props)
    assert props.content_box == (32, 20, 32 + 256, 20 + 256) and padded.content_box == [32, 20, 288, 276]
    assert_read_inside(padded, plain, 32, 20, framed.shape)
    assert padded.grey.shape == framed.shape and not padded.grey[:20].any()  # the frame is shown, black


def test_a_noisy_or_bright_border_is_cut_too(btxrd_dir, tmp_path):
    """The shipped model also cuts noisy borders (``crop_noisy_border``): a radiograph inside a 32-px
    border of dark detector noise, or of a bright collimated edge with a scatter ramp, gets the answers
    of the radiograph alone. On validation such borders cost 1.5.3, which cut flat borders only,
    0.061 and 0.066 malignant AUC (benchmarks/radiograph_robustness.py, noisy_dark_frame, bright_frame)."""
    from osteolens.inference.analyze import analyze_image
    from osteolens.io.images import read_image
    from osteolens.models.registry import load_model

    model = load_model("osteolens-radiograph", threads=1)
    assert model.metadata["preprocessing"]["crop_noisy_border"] is True
    grey = np.asarray(Image.open(btxrd_dir / "images" / "IMG000004.png").convert("L"))
    Image.fromarray(grey).save(tmp_path / "plain.png")
    plain = analyze_image(model, *read_image(tmp_path / "plain.png"))
    rng = np.random.default_rng(0)
    dark = rng.normal(8, 2.5, (320, 320))
    bright = np.linspace(217, 191, 320)[None, :] + rng.normal(0, 2.5, (320, 320))
    for name, border in (("dark", dark), ("bright", bright)):
        framed = np.clip(np.round(border), 0, 255).astype(np.uint8)
        framed[32:-32, 32:-32] = grey
        Image.fromarray(framed).save(tmp_path / f"{name}.png")
        inside = analyze_image(model, *read_image(tmp_path / f"{name}.png"))
        assert inside.content_box == [32, 32, 288, 288], name
        assert_read_inside(inside, plain, 32, 32, (320, 320))


def test_a_flat_letterbox_is_cut_before_the_network_reads_the_image(btxrd_dir, tmp_path):
    """The shipped model's preprocessing cuts flat borders (``crop_uniform_border``): a radiograph
    saved inside an unmarked black letterbox gets the answers of the radiograph alone, placed in the
    letterbox's pixels. Without it a 32-px black frame cost 0.067 validation malignant AUC
    (benchmarks/radiograph_robustness.py, variant black_frame)."""
    from osteolens.inference.analyze import analyze_image
    from osteolens.io.images import read_image
    from osteolens.models.registry import load_model

    model = load_model("osteolens-radiograph", threads=1)
    assert model.metadata["preprocessing"]["crop_uniform_border"] == pytest.approx(1.5 / 255, abs=1e-4)
    grey = np.asarray(Image.open(btxrd_dir / "images" / "IMG000004.png").convert("L"))
    assert np.ptp(grey[0]) > 5 and np.ptp(grey[:, 0]) > 5  # this image has no flat border of its own
    Image.fromarray(grey).save(tmp_path / "plain.png")
    Image.fromarray(np.pad(grey, ((20, 12), (32, 40)))).save(tmp_path / "framed.png")
    plain = analyze_image(model, *read_image(tmp_path / "plain.png"))
    framed = analyze_image(model, *read_image(tmp_path / "framed.png"))
    assert plain.content_box is None and framed.content_box == [32, 20, 288, 276]
    assert_read_inside(framed, plain, 32, 20, (288, 328))
    # the same letterboxed radiograph as a DICOM inside a Pixel Padding Value frame: padding, then letterbox, cut
    from tests.io.test_dicom import make_dicom

    grey12 = grey.astype(np.uint16) * 16
    letterboxed = np.pad(grey12, ((20, 12), (32, 40)))
    dicom = analyze_image(model, *read_image(make_dicom(tmp_path / "plain.dcm", grey12)))
    padded = analyze_image(model, *read_image(make_dicom(tmp_path / "padded.dcm", np.pad(letterboxed, 8, constant_values=4095),
                                                         PixelPaddingValue=4095)))
    assert padded.content_box == [40, 28, 296, 284]
    for field in ("p_normal", "p_benign", "p_malignant", "label", "lesion_area_px"):
        assert getattr(padded, field) == getattr(dicom, field), field


def test_a_radiograph_stored_sideways_with_an_exif_orientation_is_analysed_upright(btxrd_dir, tmp_path):
    """A phone or export tool may store the pixels sideways and set EXIF Orientation 6 ("turn 90 degrees
    clockwise to view"). The network must read it upright, as it was trained, and its mask must lie on
    the image as viewers show it. Read as stored (before this was fixed), the sideways copy of this
    malignant radiograph got p(malignant) 0.34 instead of 0.88 and a mask 3.5 times too large."""
    from osteolens.inference.analyze import analyze_image
    from osteolens.io.images import read_image
    from osteolens.models.registry import load_model

    model = load_model("osteolens-radiograph", threads=1)
    upright = np.asarray(Image.open(btxrd_dir / "images" / "IMG000004.png").convert("L"))[:, 16:240]  # 256 x 224
    Image.fromarray(upright).save(tmp_path / "upright.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways = np.ascontiguousarray(np.rot90(upright, 1))  # stored turned anticlockwise, so clockwise shows it upright
    Image.fromarray(sideways).save(tmp_path / "tagged.jpg", quality=95, exif=exif)
    Image.fromarray(sideways).save(tmp_path / "untagged.jpg", quality=95)
    plain = analyze_image(model, *read_image(tmp_path / "upright.jpg"))
    tagged = analyze_image(model, *read_image(tmp_path / "tagged.jpg"))
    untagged = analyze_image(model, *read_image(tmp_path / "untagged.jpg"))
    assert plain.label == tagged.label == "malignant"
    assert tagged.mask.shape == plain.mask.shape == upright.shape
    for field in ("p_normal", "p_benign", "p_malignant"):
        assert getattr(tagged, field) == pytest.approx(getattr(plain, field), abs=0.03), field
    overlap = (tagged.mask & plain.mask).sum() / max(plain.mask.sum(), 1)
    assert plain.mask.sum() > 100 and overlap > 0.8
    assert plain.p_malignant - untagged.p_malignant > 0.3  # what reading the stored pixels would have cost


def test_a_full_size_radiograph_gets_the_same_lesion_in_its_own_pixels(btxrd_dir, tmp_path):
    """A CR or DX radiograph is 2,000-4,000 px a side. Its mask is post-processed at 640 px
    (``POSTPROCESS_MAX_SIDE``; closing and labelling a 20-megapixel map took 2.4 s) and scaled back:
    the lesion must be the one the 256-px image gets, at the input's size, inside its boxes."""
    from osteolens.inference.analyze import analyze_image
    from osteolens.io.images import read_image
    from osteolens.models.registry import load_model
    from osteolens.transforms.preprocess import resize

    shipped = load_model("osteolens-radiograph", threads=1)
    calib = {k: v for k, v in shipped.metadata["calibration"].items() if k != "second_look"}
    model = replace(shipped, metadata={**shipped.metadata, "calibration": calib})  # the first look alone
    src = Image.open(btxrd_dir / "images" / "IMG000004.png").convert("L")
    src.save(tmp_path / "small.png")
    src.resize((2048, 2560), Image.BICUBIC).save(tmp_path / "large.png")

    def agreement(a, b):
        down = resize(b.mask.astype(np.uint8) * 255, a.mask.shape) >= 128
        return 2 * (down & a.mask).sum() / (down.sum() + a.mask.sum())

    # the shipped second look redraws the top lesion from a view of the image as the network read it; the film's
    # bicubic enlargement, shrunk to 320 px, is sharper there than the 256-px image enlarged, and the refiner,
    # reading that view 2-3 times enlarged, draws it somewhat differently (0.89 where the first look gives 0.96)
    refined = [analyze_image(shipped, *read_image(tmp_path / f"{n}.png")) for n in ("small", "large")]
    assert agreement(*refined) > 0.85
    small = analyze_image(model, *read_image(tmp_path / "small.png"))
    large = analyze_image(model, *read_image(tmp_path / "large.png"))
    assert small.label == large.label == "malignant" and abs(small.p_malignant - large.p_malignant) < 0.05
    assert large.mask.shape == large.mask_probability.shape == large.saliency.shape == (2560, 2048)
    assert agreement(small, large) > 0.9
    assert large.lesion_area_px == pytest.approx(small.lesion_area_px * 80, rel=0.1)  # 8 x 10 times the pixels
    x0, y0, x1, y1 = large.boxes[0]
    assert np.allclose([x0 / 8, y0 / 10, x1 / 8, y1 / 10], small.boxes[0], atol=2)
    inside = np.zeros(large.mask.shape, bool)
    for x0, y0, x1, y1 in large.boxes:
        inside[y0:y1, x0:x1] = True
    assert not (large.mask & ~inside).any()
    # its size, measured on the 640-px working mask and scaled, is the size of the mask it writes
    measured = largest_lesion_axes(large.mask)
    assert [large.lesion_long_axis_px, large.lesion_short_axis_px] == pytest.approx(measured[:2], rel=0.03)
    x0, y0, x1, y1 = large.lesion_long_axis_line  # its ends lie on the lesion, in the film's pixels
    assert large.mask[y0, x0] and large.mask[y1, x1] and np.hypot(x1 - x0, y1 - y0) == pytest.approx(measured.long_axis, rel=0.03)
    # each lesion's area and box, scaled from the working mask, are those of its component in the mask written
    from scipy import ndimage

    labels, n = ndimage.label(large.mask, structure=np.ones((3, 3)))
    assert len(large.lesions) == n >= 1
    for one in large.lesions:
        x0, y0, x1, y1 = one["box"]
        k = np.bincount(labels[y0:y1, x0:x1].ravel(), minlength=n + 1)[1:].argmax() + 1
        assert one["area_px"] == pytest.approx((labels == k).sum(), rel=0.03)
        ox, oy = np.array(one["outline"]).T
        assert (x0 <= ox).all() and (ox < x1).all() and (y0 <= oy).all() and (oy < y1).all()


def test_each_lesion_is_measured(batch):
    """``lesions`` in the JSON: one entry per box, in the boxes' order, each the component of the mask written."""
    from scipy import ndimage

    d, out, results = batch
    seen = 0
    for stem, spacing in (("a_plain", None), ("b_sixteen", None), ("c_colour", None), ("d_radiograph", (0.5, 0.4))):
        info = json.loads((out / f"{stem}.json").read_text())
        mask = np.asarray(Image.open(out / "masks" / f"{stem}.png")) > 0
        labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
        lesions = info["lesions"]
        assert len(lesions) == n == len(info["boxes"])
        assert [one["box"] for one in lesions] == info["boxes"] and [one["score"] for one in lesions] == info["box_scores"]
        assert sum(one["area_px"] for one in lesions) == info["lesion_area_px"]
        for one in lesions:
            x0, y0, x1, y1 = one["box"]
            component = labels == labels[one["outline"][0][1], one["outline"][0][0]]
            assert component.sum() == one["area_px"]
            rows, cols = np.nonzero(component)
            assert [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1] == [x0, y0, x1, y1]
            assert all(component[y, x] for x, y in one["outline"])
            long_px, short_px, _ = largest_lesion_axes(component)
            assert [one["long_axis_px"], one["short_axis_px"]] == pytest.approx([long_px, short_px], abs=0.01)
            if spacing:
                long_mm, short_mm, _ = largest_lesion_axes(component, spacing)
                assert [one["long_axis_mm"], one["short_axis_mm"]] == pytest.approx([long_mm, short_mm], abs=0.01)
                assert one["area_mm2"] == pytest.approx(one["area_px"] * 0.2, abs=0.01)
            else:
                assert one["long_axis_mm"] is one["area_mm2"] is None
        if lesions:
            largest = max(lesions, key=lambda one: one["area_px"])
            assert info["lesion_long_axis_px"] == largest["long_axis_px"]
            assert info["lesion_long_axis_line"] == largest["long_axis_line"]
        seen += len(lesions)
    assert seen >= 2


def test_clinical_rows_that_cannot_be_told_apart_fail_those_images_and_the_batch_goes_on(tiny_model, btxrd_dir, tmp_path):
    for sub, case in (("a", "IMG000001"), ("b", "IMG000004")):
        (tmp_path / sub).mkdir()
        Image.open(btxrd_dir / "images" / f"{case}.png").save(tmp_path / sub / "img.png")
    Image.open(btxrd_dir / "images" / "IMG000001.png").save(tmp_path / "c.png")
    csv = tmp_path / "clinical.csv"
    csv.write_text("image,age,sex\nimg.png,30,M\nc.png,forty,F\nmissing.png,50,F\n")
    notes: list[str] = []
    results = analyze([tmp_path / "a", tmp_path / "b", tmp_path / "c.png"], tmp_path / "out", model=tiny_model,
                      clinical_csv=csv, notes=notes)
    assert [r.status for r in results] == ["error", "error", "error"]
    assert "the clinical row for 'img.png' names 2 different inputs" in results[0].error
    assert results[2].error == "clinical data for c.png (clinical.csv line 3): age 'forty' is not a number of years"
    assert notes == ["1 clinical row(s) name no input (missing.png)"]
    csv.write_text("image,age,sex\na/img.png,30,M\nb\\img.png,70,F\n")  # paths tell them apart
    results = analyze([tmp_path / "a", tmp_path / "b"], tmp_path / "out2", model=tiny_model, clinical_csv=csv)
    assert [r.status for r in results] == ["ok", "ok"]
    assert sorted(p.name for p in (tmp_path / "out2" / "masks").iterdir()) == ["img.png", "img_1.png"]


def test_analyze_then_evaluate_scores_masks_and_ranked_boxes(btxrd_dir, btxrd_manifest, tmp_path):
    """The two commands a user runs, on real radiographs with the shipped model: evaluate reads the masks and box
    scores from analyze's predictions.csv as written (no column to add), so Dice and AP are those of the masks
    and lesion scores analyze reported."""
    from osteolens.evaluation import detection as det
    from osteolens.evaluation.report import evaluate

    cases = ["IMG000001", "IMG000004", "IMG000005", "IMG000222", "IMG000234", "IMG000235", "IMG001868", "IMG001871"]
    analyze([btxrd_dir / "images" / f"{c}.png" for c in cases], tmp_path / "run", overlays=False, report=False)
    metrics = evaluate(tmp_path / "run" / "predictions.csv", btxrd_manifest, tmp_path / "eval", n_boot=20, seed=0)
    truth = {c: np.asarray(Image.open(btxrd_dir / "masks" / f"{c}.png")) > 127 for c in cases}
    tumours = [c for c in cases if truth[c].any()]
    dice = []
    for c in tumours:
        pred = np.asarray(Image.open(tmp_path / "run" / "masks" / f"{c}.png")) > 0
        dice.append(2 * (pred & truth[c]).sum() / (pred.sum() + truth[c].sum()))
    seg = metrics["segmentation"]["dice_mean_tumour"]
    assert seg["n"] == len(tumours) >= 4 and seg["value"] == pytest.approx(np.mean(dice), abs=1e-6)
    lesions = {c: json.loads((tmp_path / "run" / f"{c}.json").read_text())["lesions"] for c in cases}
    matched = det.match_detections([det.boxes_from_mask(truth[c]) for c in cases],
                                   [[(tuple(one["box"]), one["score"]) for one in lesions[c]] for c in cases], 0.5)
    assert metrics["detection"]["ap50"]["value"] == pytest.approx(det.average_precision(matched), abs=1e-4)


def test_the_issue_s_clinical_columns_give_the_region_through_the_site(tiny_model, btxrd_dir, tmp_path):
    """A clinical CSV with the columns ``image, age, sex, site`` (no region) reads the region from the site: the
    answer is the one given with the region itself, and only the view is listed as missing."""
    img = btxrd_dir / "images" / "IMG000004.png"
    (tmp_path / "site.csv").write_text("image,age,sex,site\nIMG000004.png,52,M,foot\n")
    (tmp_path / "region.csv").write_text("image,age,sex,region\nIMG000004.png,52,M,lower limb\n")
    (tmp_path / "neither.csv").write_text("image,age,sex\nIMG000004.png,52,M\n")
    got = {k: analyze([img], tmp_path / k, model=tiny_model, clinical_csv=tmp_path / f"{k}.csv", overlays=False,
                      report=False)[0] for k in ("site", "region", "neither")}
    assert got["site"].clinical_missing == got["region"].clinical_missing == ["view"]
    assert got["neither"].clinical_missing == ["region", "view"]
    assert got["site"].p_malignant == got["region"].p_malignant != got["neither"].p_malignant


def test_a_laterality_that_names_no_side_fails_that_image_and_the_batch_goes_on(tiny_model, btxrd_dir, tmp_path):
    csv = tmp_path / "clinical.csv"
    csv.write_text("image,laterality,study\nIMG000001.png,up,s1\nIMG000004.png,Left,s1\n")
    results = analyze([btxrd_dir / "images" / n for n in ("IMG000001.png", "IMG000004.png")], tmp_path / "out",
                      model=tiny_model, clinical_csv=csv, overlays=False, report=False)
    assert [r.status for r in results] == ["error", "ok"]
    assert results[0].error == ("clinical data for IMG000001.png (clinical.csv line 2): laterality 'up' names no side "
                                "(L, R or B; left, right or both)")
    assert results[1].anatomy["laterality"] == {"value": "L", "from": "clinical.csv line 3"}


def test_a_tumour_called_with_no_lesion_outlined_says_so_in_the_report(btxrd_dir, tmp_path):
    """IMG001151, an osteochondroma of the femur: the shipped model calls it benign, and no part of its mask reaches
    the threshold. The report says that nothing was outlined instead of showing an empty box list."""
    from osteolens.reporting.html import NO_OUTLINE

    clinical = {"IMG001151.png": {"age": 59, "sex": "M", "region": "lower limb", "view": "frontal"}}
    (r,) = analyze([btxrd_dir / "images" / "IMG001151.png"], tmp_path, overlays=False, clinical=clinical)
    assert r.status == "ok" and r.label == "benign" and r.boxes == [] and r.lesion_area_px == 0
    html = (tmp_path / "report.html").read_text()
    assert NO_OUTLINE in html


def test_a_bare_dataset_radiograph_is_analysed_with_its_dicom_objects(tiny_model, btxrd_dir, tmp_path):
    """A radiograph stored without the file meta header (older exporters) is analysed like its Part 10 file, and its
    SEG, SR, presentation state and overlay capture are written into its study."""
    import pydicom
    from pydicom.uid import generate_uid

    from tests.io.test_dicom import _bare_copy, make_dicom

    study = generate_uid()
    part10 = make_dicom(tmp_path / "knee.dcm", np.asarray(Image.open(btxrd_dir / "images" / "IMG000004.png")).astype(np.uint16) * 16,
                        StudyInstanceUID=study, SeriesInstanceUID=generate_uid(), PixelSpacing=[0.2, 0.2])
    scans = tmp_path / "scans"
    scans.mkdir()
    _bare_copy(part10, scans / "IM0001")
    (bare,) = analyze([scans], tmp_path / "out", model=tiny_model, dicom_out=True)
    (reference,) = analyze([part10], tmp_path / "ref", model=tiny_model)
    assert bare.status == "ok" and bare.image == "IM0001"
    assert (bare.p_normal, bare.p_malignant, bare.lesion_area_mm2) == (reference.p_normal, reference.p_malignant,
                                                                      reference.lesion_area_mm2)
    written = sorted((tmp_path / "out" / "dicom" / "IM0001").glob("*.dcm"))
    assert [p.name for p in written] == ["pr.dcm", "sc.dcm", "seg.dcm", "sr.dcm"]
    assert {str(pydicom.dcmread(p).StudyInstanceUID) for p in written} == {study}


def test_a_radiograph_over_100_megapixels_is_refused_before_decoding_and_the_batch_goes_on(tiny_model, btxrd_dir,
                                                                                             tmp_path):
    """The reader's general limit (400 Mpx) is for plain-image slides; a radiograph analysis stops at 100 Mpx."""
    from osteolens.errors import ImageReadError
    from osteolens.inference.analyze import MAX_RADIOGRAPH_PIXELS
    from osteolens.io.images import read_image
    from tests.io.test_dicom import make_dicom
    from tests.io.test_images import png_claiming

    assert MAX_RADIOGRAPH_PIXELS == 100_000_000
    big = png_claiming(tmp_path / "big.png", 12_000, 10_000)  # 120 Mpx claimed in about 100 bytes
    with pytest.raises(ImageReadError) as caught:  # under the general limit: the reader goes on to decode it
        read_image(big)
    assert "megapixels" not in str(caught.value)
    header = make_dicom(tmp_path / "big.dcm", np.zeros((4, 4)), Rows=9_000, Columns=12_000)
    shutil.copy(btxrd_dir / "images" / "IMG000001.png", tmp_path / "knee.png")
    results = analyze([big, header, tmp_path / "knee.png"], tmp_path / "out", model=tiny_model)
    status = {r.image: (r.status, r.error) for r in results}
    assert status["knee.png"] == ("ok", "")
    assert status["big.png"] == ("error", f"{big}: image is 12000 x 10000 px (120 megapixels), over the 100 megapixels "
                                          "a radiograph analysis reads (a guard against files that decode to more than "
                                          "the memory holds)")
    assert status["big.dcm"][0] == "error" and "12000 x 9000 px (108 megapixels), over the 100" in status["big.dcm"][1]
