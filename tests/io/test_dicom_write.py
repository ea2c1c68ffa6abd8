"""DICOM out: CR wrapping, SEG, SR (TID 1500) and secondary capture, checked by dciodvfy and read back."""

import csv
import json
import os
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from osteolens.cli import app


def dciodvfy_errors(path):
    tool = shutil.which("dciodvfy")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("dciodvfy (Debian dicom3tools) missing: make test installs it")
        pytest.skip("dciodvfy not installed")
    res = subprocess.run([tool, str(path)], capture_output=True, text=True)
    return [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("Error")]


def test_from_image_analyze_dicom_out_round_trip(tiny_model, btxrd_dir, tmp_path):
    import highdicom as hd

    runner = CliRunner()
    src = tmp_path / "cr.dcm"
    r = runner.invoke(app, ["dicom", "from-image", str(btxrd_dir / "images" / "IMG000004.png"), "--out", str(src),
                            "--patient-id", "P-42", "--patient-sex", "M", "--body-part", "FOOT", "--pixel-spacing-mm", "0.4"])
    assert r.exit_code == 0, r.output
    ds = pydicom.dcmread(src)
    assert ds.Modality == "CR" and ds.PatientID == "P-42" and ds.Rows == 256
    assert dciodvfy_errors(src) == []
    r = runner.invoke(app, ["analyze", str(src), "--out", str(tmp_path / "out"), "--model", str(tiny_model), "--dicom-out"])
    assert r.exit_code == 0, r.output
    folder = tmp_path / "out" / "dicom" / "cr"
    for name in ("seg.dcm", "sr.dcm", "pr.dcm", "sc.dcm"):
        assert dciodvfy_errors(folder / name) == [], name
    seg = hd.seg.segread(folder / "seg.dcm")
    sr = pydicom.dcmread(folder / "sr.dcm")
    sc = pydicom.dcmread(folder / "sc.dcm")
    for obj in (seg, sr, sc):
        assert obj.StudyInstanceUID == ds.StudyInstanceUID and obj.PatientID == "P-42"
        assert obj.SeriesInstanceUID != ds.SeriesInstanceUID
    assert seg.SourceImageSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID
    from PIL import Image

    mask = np.asarray(Image.open(tmp_path / "out" / "masks" / "cr.png")) > 0
    assert np.array_equal(seg.pixel_array.reshape(mask.shape).astype(bool), mask)
    text = str(sr)
    assert "Probability of malignant bone tumour" in text and "Imaging Measurement Report" in text
    assert "tiny-test-model" in text
    assert sc.SamplesPerPixel == 3 and sc.ReferencedImageSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID
    # the overlay, every pixel of it, compressed losslessly (JPEG-LS)
    assert sc.file_meta.TransferSyntaxUID == pydicom.uid.JPEGLSLossless
    assert np.array_equal(sc.pixel_array, np.asarray(Image.open(tmp_path / "out" / "cr_overlay.png").convert("RGB")))
    # the largest lesion's axes, in the file's 0.4-mm pixels, as the JSON gives them
    from osteolens.volumes.measure import largest_lesion_axes

    long_axis, short_axis, _ = largest_lesion_axes(mask, (0.4, 0.4))
    assert long_axis > short_axis > 0
    groups = _measurement_groups(sr)
    whole = groups.pop("bone tumour 1")
    assert whole["Long axis"] == pytest.approx(long_axis, abs=0.01)
    assert whole["Short axis"] == pytest.approx(short_axis, abs=0.01)
    # one group per lesion: its outline on the radiograph, and its own area and axes
    import json

    lesions = json.loads((tmp_path / "out" / "cr.json").read_text())["lesions"]
    assert len(lesions) >= 1 and sorted(groups) == [f"lesion {k}" for k in range(1, len(lesions) + 1)]
    for k, one in enumerate(lesions, start=1):
        group = groups[f"lesion {k}"]
        assert group["Area"] == pytest.approx(one["area_px"] * 0.16, abs=0.01)
        assert [group["Long axis"], group["Short axis"]] == pytest.approx([one["long_axis_mm"], one["short_axis_mm"]], abs=0.01)
        outline = group["outline"]
        assert group["graphic_type"] == "POLYLINE" and np.array_equal(outline[0], outline[-1])
        cols, rows = (outline[:-1] - 0.5).round().astype(int).T  # DICOM's pixel centres are at +0.5
        assert mask[rows, cols].all() and np.array_equal(np.c_[cols, rows], one["outline"])


def _measurement_groups(sr) -> dict:
    """``{tracking identifier: {measurement meaning: value, "outline": points, "graphic_type": ...}}`` of an SR."""
    groups = {}
    for item in _content_items(sr):
        if item.ConceptNameCodeSequence[0].CodeMeaning != "Measurement Group":
            continue
        group = {}
        for child in item.ContentSequence:
            meaning = child.ConceptNameCodeSequence[0].CodeMeaning
            if meaning == "Tracking Identifier":
                name = child.TextValue
            elif "MeasuredValueSequence" in child:
                group[meaning] = float(child.MeasuredValueSequence[0].NumericValue)
            elif child.ValueType == "SCOORD":
                group["graphic_type"] = child.GraphicType
                group["outline"] = np.asarray(child.GraphicData, float).reshape(-1, 2)
        groups[name] = group
    return groups


def _content_items(ds):
    """Every item of an SR content tree, depth first."""
    for item in getattr(ds, "ContentSequence", []):
        yield item
        yield from _content_items(item)


def test_presentation_state_draws_each_lesion_on_the_radiograph(btxrd_dir, tmp_path):
    """The GSPS (``pr.dcm``) shows the analysis on the source image: each lesion's outline and long
    axis where the JSON puts them, its size, the decision and the notice; a MONOCHROME1 source keeps
    its inversion (Presentation LUT Shape INVERSE)."""
    import json

    from osteolens.inference.analyze import analyze
    from osteolens.io.dicom_write import image_to_dicom

    plain = image_to_dicom(btxrd_dir / "images" / "IMG000004.png", tmp_path / "plain.dcm", pixel_spacing_mm=0.4)
    ds = pydicom.dcmread(plain)
    ds.PhotometricInterpretation = "MONOCHROME1"  # the same radiograph, stored the other way round
    ds.PixelData = ((2**ds.BitsStored - 1) - ds.pixel_array).astype(ds.pixel_array.dtype).tobytes()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(tmp_path / "mono1.dcm", enforce_file_format=True)
    results = analyze([plain, tmp_path / "mono1.dcm"], tmp_path / "out", model="osteolens-radiograph", dicom_out=True)
    assert [r.status for r in results] == ["ok", "ok"]
    for stem, lut_shape in (("plain", "IDENTITY"), ("mono1", "INVERSE")):
        path = tmp_path / "out" / "dicom" / stem / "pr.dcm"
        assert dciodvfy_errors(path) == []
        pr, source = pydicom.dcmread(path), pydicom.dcmread(tmp_path / f"{stem}.dcm")
        assert pr.Modality == "PR" and pr.StudyInstanceUID == source.StudyInstanceUID
        assert pr.ReferencedSeriesSequence[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert pr.PresentationLUTShape == lut_shape
        info = json.loads((tmp_path / "out" / f"{stem}.json").read_text())
        lesions = info["lesions"]
        assert len(lesions) >= 2  # the shipped model sees several on IMG000004
        layers = {a.GraphicLayer: a for a in pr.GraphicAnnotationSequence}
        assert {layer.GraphicLayer for layer in pr.GraphicLayerSequence} == {"LESIONS", "LONG AXES", "OSTEOLENS TEXT"}
        drawn = [np.asarray(g.GraphicData, float).reshape(-1, 2) for g in layers["LESIONS"].GraphicObjectSequence]
        lines = [np.asarray(g.GraphicData, float).reshape(-1, 2) for g in layers["LONG AXES"].GraphicObjectSequence]
        assert len(drawn) == len(lines) == len(lesions)
        for outline, line, one in zip(drawn, lines, lesions):  # DICOM's pixel centres are at +0.5
            assert np.array_equal(outline - 0.5, one["outline"] + one["outline"][:1])
            assert np.array_equal((line - 0.5).ravel(), one["long_axis_line"])
        texts = [t.UnformattedTextValue for t in layers["OSTEOLENS TEXT"].TextObjectSequence]
        assert texts[:-1] == [f"{k}: {one['long_axis_mm']:.1f} x {one['short_axis_mm']:.1f} mm"
                              for k, one in enumerate(lesions, start=1)]
        model = f"{info['model']['name']} {info['model']['version']}"
        assert texts[-1].startswith(f"{model}: {info['decision']} (p normal {info['p_normal']:.2f}, ")
        assert "research use only" in texts[-1]
    assert json.loads((tmp_path / "out" / "mono1.json").read_text())["lesions"] == lesions  # the same radiograph
    # DCMTK's presentation-state renderer shows both sources the same through their GSPS: the inversion is kept once
    if shutil.which("dcmp2pgm") is None:
        pytest.fail("dcmp2pgm (Debian package dcmtk) is missing; `make test` installs it")
    from PIL import Image

    shown = []
    for stem in ("plain", "mono1"):
        subprocess.run(["dcmp2pgm", "-p", str(tmp_path / "out" / "dicom" / stem / "pr.dcm"), str(tmp_path / f"{stem}.dcm"),
                        str(tmp_path / f"{stem}.pgm")], check=True, capture_output=True)
        shown.append(np.asarray(Image.open(tmp_path / f"{stem}.pgm")))
    assert shown[0].shape == (256, 256) and shown[0].std() > 10 and np.array_equal(shown[0], shown[1])


def test_a_stripped_header_still_gets_valid_outputs_and_one_without_its_study_is_named(tiny_model, btxrd_dir, tmp_path):
    """A DICOM with its study and series UIDs but no patient or study attributes (as some anonymisers leave
    them) gets SEG, SR, presentation state and capture that dciodvfy passes, with those attributes empty; one
    without a StudyInstanceUID cannot place its outputs in a study and is an error row naming what it lacks,
    while the batch goes on (the first raised an AttributeError out of highdicom and stopped the batch)."""
    from PIL import Image
    from pydicom.uid import generate_uid

    from osteolens.inference.analyze import analyze
    from tests.io.test_dicom import make_dicom

    pixels = np.asarray(Image.open(btxrd_dir / "images" / "IMG000004.png")).astype(np.uint16) * 16
    make_dicom(tmp_path / "stripped.dcm", pixels, StudyInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid())
    make_dicom(tmp_path / "no_study.dcm", pixels)
    results = analyze([tmp_path / "no_study.dcm", tmp_path / "stripped.dcm"], tmp_path / "out", model=tiny_model,
                      dicom_out=True, overlays=True)
    assert [r.status for r in results] == ["ok", "ok"] and results[1].error == ""
    assert results[0].error.startswith("analysed, but its DICOM outputs were not written: ")
    assert results[0].error.endswith("no_study.dcm: has no StudyInstanceUID, SeriesInstanceUID, so DICOM outputs "
                                     "cannot join its study; they need the file's header fixed")
    for name in ("seg.dcm", "sr.dcm", "pr.dcm", "sc.dcm"):
        path = tmp_path / "out" / "dicom" / "stripped" / name
        assert dciodvfy_errors(path) == [], name
        assert pydicom.dcmread(path).PatientID == ""


def test_damaged_headers_are_error_rows_that_name_the_damage_and_the_batch_goes_on(tiny_model, btxrd_dir, tmp_path):
    """One byte changed in a real radiograph's header. Of 300 files damaged at random (a throwaway loop), 13 stopped
    a --dicom-out batch with exceptions out of pydicom or highdicom; such a file is now its own row. One whose
    pixels read but whose header cannot carry the DICOM outputs keeps its analysis: an ok row whose error says
    why no DICOM object was written, with no half set of objects left behind."""
    from osteolens.inference.analyze import analyze
    from osteolens.io.dicom_write import image_to_dicom

    good = image_to_dicom(btxrd_dir / "images" / "IMG000004.png", tmp_path / "good.dcm", patient_id="P-1")
    data = good.read_bytes()

    def damaged(name: str, element: bytes, offset: int, byte: int):
        """A copy with one byte changed, ``offset`` bytes after the element's tag and VR (which occur once)."""
        assert data.count(element) == 1
        copy = bytearray(data)
        copy[data.index(element) + len(element) + offset] = byte
        (tmp_path / name).write_bytes(bytes(copy))
        return tmp_path / name

    sop_class = pydicom.dcmread(good).SOPClassUID
    files = [
        damaged("vr.dcm", b"\x08\x00\x90\x00P", 0, 0x8E),  # the second letter of Referring Physician's VR
        damaged("sop.dcm", b"\x08\x00\x16\x00UI", 2 + sop_class.index("4.1.1") + 2, 0xD4),  # a digit of its SOP Class UID
        good,
    ]
    notes = []
    with pytest.warns(UserWarning, match="Invalid value for VR UI"):  # pydicom's, on reading the broken UID
        results = analyze(files, tmp_path / "out", model=tiny_model, dicom_out=True, overlays=True, notes=notes)
    assert [r.status for r in results] == ["error", "ok", "ok"]
    assert results[0].error.endswith("vr.dcm: unreadable DICOM: NotImplementedError: Unknown Value Representation "
                                     "'0x50 0x8e' in tag (0008,0090)")
    assert results[1].error.startswith("analysed, but its DICOM outputs were not written: ")
    assert "sop.dcm: its DICOM outputs could not be written from its header (" in results[1].error
    assert results[2].error == ""
    # the damaged header changes no pixel: the analysis equals the good copy's
    assert results[1].p_malignant == results[2].p_malignant and results[1].boxes == results[2].boxes
    assert not (tmp_path / "out" / "dicom" / "sop").exists()
    assert len(list((tmp_path / "out" / "dicom" / "good").glob("*.dcm"))) == 4
    saved = json.loads((tmp_path / "out" / "sop.json").read_text())
    assert saved["status"] == "ok" and saved["dicom_files"] is None and saved["error"] == results[1].error
    assert (tmp_path / "out" / "masks" / "sop.png").is_file()
    with open(tmp_path / "out" / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[1]["status"] == "ok" and rows[1]["error"] == results[1].error and rows[1]["p_malignant"]
    assert notes == ["1 image(s) analysed without their DICOM outputs, which their headers could not carry "
                     "(sop.dcm): see the error column"]
    report = (tmp_path / "out" / "report.html").read_text()
    assert report.count("<td>not written</td>") == 1 and "3 input(s): 2 analysed, 1 failed" in report
