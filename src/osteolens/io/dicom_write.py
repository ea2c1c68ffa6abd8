"""DICOM out: wrap an image as a CR radiograph; write SEG, SR (TID 1500), GSPS and secondary capture.

``image_to_dicom`` turns a PNG/JPEG/TIFF into a Computed Radiography image (patient and study
attributes given or generated) so that plain images can enter the DICOM path.
``write_analysis_dicom`` writes, for a DICOM source image and its analysis, with highdicom:

- a binary DICOM Segmentation of the tumour, referencing the source image;
- a Comprehensive SR measurement report (TID 1500): tumour finding, benign and malignant
  probabilities, subtype, lesion area, the largest lesion's long and short axis (mm), uncertainty and
  the indeterminate flag, the clinical values the model read (age, sex, region, view), with the model's
  name, version and sha256 as algorithm identification;
- a Grayscale Softcopy Presentation State (GSPS) that draws each lesion's outline and long axis,
  its size and the decision over the source image itself, as most PACS viewers show it;
- a secondary-capture image of the overlay (JPEG-LS lossless) for viewers that cannot show SEG.

All four share the source's study and patient, and sit in new series. ``write_study_sr`` writes one
more SR per study whose views were read together (``osteolens.inference.study``), naming every view.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np

from osteolens import __version__
from osteolens.errors import OsteolensError
from osteolens.io.dicom import read_dicom_dataset

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
MANUFACTURER = "osteolens (open source)"
#: what :func:`write_analysis_dicom` writes into its folder: SEG, SR, presentation state, secondary capture
OUTPUT_FILES = ("seg.dcm", "sr.dcm", "pr.dcm", "sc.dcm")
#: body part names (Body Part Examined as archives write it, a clinical table's site, lower case, letters only) and
#: the SNOMED CT concept (pydicom's ``codes.SCT`` keyword) an SR's Finding Site codes them with
FINDING_SITES = {
    "knee": "Knee", "femur": "Femur", "thigh": "Thigh", "tibia": "Tibia", "fibula": "Fibula", "leg": "LowerLeg",
    "lowerleg": "LowerLeg", "ankle": "AnkleJoint", "foot": "Foot", "calcaneus": "Calcaneus", "hip": "Hip",
    "hipbone": "Pelvis", "pelvis": "Pelvis", "humerus": "Humerus", "arm": "UpperArm", "upperarm": "UpperArm",
    "shoulder": "Shoulder", "elbow": "ElbowJoint", "forearm": "Forearm", "radius": "Radius", "ulna": "Ulna",
    "wrist": "WristJoint", "hand": "Hand", "clavicle": "Clavicle", "scapula": "Scapula",
    "lowerlimb": "LowerLimb", "lowerextremity": "LowerLimb", "lwrlimb": "LowerLimb",
    "upperlimb": "UpperLimb", "upperextremity": "UpperLimb", "uprlimb": "UpperLimb",
}
#: a reading's side (``L``, ``R``, ``B``) and its SNOMED CT laterality qualifier
SIDE_CODES = {"L": "Left", "R": "Right", "B": "RightAndLeft"}


def image_to_dicom(image: str | Path, out: str | Path, patient_id: str | None = None, patient_name: str | None = None,
                   patient_sex: str = "", patient_birth_date: str = "", patient_age: str | int = "", study_uid: str | None = None,
                   accession: str = "", body_part: str = "", view_position: str = "", laterality: str = "",
                   pixel_spacing_mm: float | None = None) -> Path:
    """Wrap a plain image as a DICOM CR radiograph (12-bit MONOCHROME2, explicit VR little endian).

    Args:
        image: PNG/JPEG/TIFF (or DICOM) file.
        out: the DICOM file to write.
        patient_id, patient_name: given, or generated (``OSTEO-<random>``, ``Anonymous``).
        patient_sex: ``M``, ``F``, ``O`` or empty.
        patient_birth_date: ``YYYYMMDD`` or empty.
        patient_age: years (``48``) or DICOM's Age String (``048Y``, ``006M``), or empty.
        study_uid: put the image into this study (default: a new one).
        accession, body_part, view_position: optional descriptors (``AP``, ``LAT``, ...).
        laterality: ``L``, ``R`` or empty: the side of a paired body part (Laterality, 0020,0060).
        pixel_spacing_mm: imager pixel spacing when known.

    Returns:
        The written path.

    Raises:
        OsteolensError: an age that is neither a number of years nor an Age String; a laterality other than L or R.
    """
    if laterality.upper() not in ("", "L", "R"):
        raise OsteolensError(f"laterality {laterality!r}: give L, R or nothing")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from osteolens.io.images import read_image, to_unit_grey

    arr, props = read_image(image)
    pixels = np.rint(to_unit_grey(arr, props) * 4095).astype(np.uint16)
    now = dt.datetime.now()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(out), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID, ds.SOPInstanceUID = CR_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.PatientName = patient_name or "Anonymous^"
    ds.PatientID = patient_id or f"OSTEO-{generate_uid()[-12:]}"
    ds.PatientBirthDate = patient_birth_date
    ds.PatientSex = patient_sex
    ds.PatientAge = _age_string(patient_age)
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.StudyDate = ds.ContentDate = ds.SeriesDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.ContentTime = ds.SeriesTime = now.strftime("%H%M%S")
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = accession
    ds.Modality = "CR"
    ds.Laterality = laterality.upper()
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.BodyPartExamined = body_part.upper()[:16]
    ds.ViewPosition = view_position
    ds.Manufacturer = MANUFACTURER
    ds.PatientOrientation = ""
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.DerivationDescription = f"converted from {Path(image).suffix.lstrip('.').upper() or 'image'} by osteolens {__version__}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    if pixel_spacing_mm:
        ds.ImagerPixelSpacing = [float(pixel_spacing_mm), float(pixel_spacing_mm)]
    ds.PixelData = pixels.tobytes()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
    return out


SC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime",
           "ReferringPhysicianName", "StudyID", "AccessionNumber", "SpecificCharacterSet")
#: patient and study attributes of type 2 (present, may be empty): a derived object needs them even where the source has none
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName",
          "StudyID", "AccessionNumber")
#: what a derived object must reference in its source (type 1): without them it cannot join the source's study
_SOURCE_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


def _fill_type2(ds) -> None:
    """Add the patient and study attributes of type 2 that ``ds`` lacks, empty (as an anonymised export leaves them)."""
    for keyword in _TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")


def secondary_capture(ref, rgb: np.ndarray, description: str):
    """An RGB Secondary Capture image in the reference image's patient and study, in a new series,
    compressed losslessly with JPEG-LS.

    Written with pydicom rather than highdicom's SCImage, which insists on a patient
    orientation that a projection radiograph often does not record (here it stays empty, type 2).
    Uncompressed, the overlay of a 2,500 x 3,000 film took 22.5 MB of a PACS's storage for each
    analysis; JPEG-LS keeps every pixel in 1.3 MB for a smooth film and 9.7-12.3 MB with 2-4 grey
    levels of noise, in 0.2-0.5 s, and Orthanc, DCMTK and pydicom (with pyjpegls or pylibjpeg)
    decode it.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, generate_uid

    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SC_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("sc.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    for keyword in _COPIED:
        if keyword in ref:
            setattr(ds, keyword, getattr(ref, keyword))
    _fill_type2(ds)
    now = dt.datetime.now()
    ds.SOPClassUID, ds.SOPInstanceUID = SC_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Laterality = ""
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 903
    ds.SeriesDescription = description[:64]
    ds.ConversionType = "WSD"
    ds.Manufacturer = MANUFACTURER
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.BurnedInAnnotation = "YES"
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.ReferencedImageSequence = [_reference(ref)]
    ds.compress(JPEGLSLossless, rgb)  # the pyjpegls encoder, a requirement of osteolens
    return ds


def _reference(ref):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.ReferencedSOPClassUID = ref.SOPClassUID
    item.ReferencedSOPInstanceUID = ref.SOPInstanceUID
    return item


def _lesion_group(hd, codes, src, lesion: dict, number: int, algo):
    """TID 1410 group for one lesion of an analysis (``Analysis.lesions``): its outline as a closed
    polyline on the source image, and its area and axes in mm where the image has a pixel spacing."""
    region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=_closed_outline(lesion),
                               source_image=hd.sr.SourceImageForRegion(src.SOPClassUID, src.SOPInstanceUID))
    measurements = _size_measurements(hd, codes, algo, lesion["area_mm2"], lesion["long_axis_mm"], lesion["short_axis_mm"])
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"lesion {number}"),
        referenced_region=region, finding_type=codes.SCT.Neoplasm, algorithm_id=algo, measurements=measurements or None,
    )


def _size_measurements(hd, codes, algo, area_mm2: float | None, long_mm: float | None, short_mm: float | None) -> list:
    """SR measurements of a lesion's area (mm2) and long and short axis (mm), each where known."""
    out = []
    for name, value, unit, digits in ((codes.SCT.Area, area_mm2, codes.UCUM.SquareMillimeter, 3),
                                      (codes.SCT.LongAxis, long_mm, codes.UCUM.Millimeter, 2),
                                      (codes.SCT.ShortAxis, short_mm, codes.UCUM.Millimeter, 2)):
        if value is not None:
            out.append(hd.sr.Measurement(name=name, value=round(float(value), digits), unit=unit, algorithm_id=algo))
    return out


def _pixel_points(points) -> np.ndarray:
    """Pixel indices ``[[x, y], ...]`` as DICOM graphic coordinates, whose (0, 0) is the top-left
    corner of the image, so a pixel's centre is at +0.5."""
    return np.asarray(points, dtype=np.float64) + 0.5


def _closed_outline(lesion: dict) -> np.ndarray:
    """A lesion's outline (``Analysis.lesions``) as a closed DICOM polyline: its first point repeated at the end."""
    return _pixel_points(lesion["outline"] + lesion["outline"][:1])


def presentation_state(src, analysis, model_meta: dict):
    """A Grayscale Softcopy Presentation State that draws the analysis over the radiograph itself.

    Most PACS viewers show a GSPS on the original image (and can switch it off), where few show
    a DICOM Segmentation. Layers: ``LESIONS`` (each lesion's outline, red), ``LONG AXES`` (each
    lesion's measured long axis, cyan) and ``OSTEOLENS TEXT`` (the decision with its
    probabilities, the research-use notice, and each lesion's number and size next to it). The
    image's own window and, for MONOCHROME1, its inversion are kept.
    """
    import highdicom as hd
    from pydicom.uid import generate_uid

    from osteolens import RESEARCH_NOTICE
    from osteolens.inference.analyze import REFER
    from osteolens.reporting.html import axes_text

    units = hd.pr.AnnotationUnitsValues.PIXEL
    layers = [hd.pr.GraphicLayer("LESIONS", 1, "osteolens lesion outlines", hd.color.CIELabColor(53.2, 80.1, 67.2)),
              hd.pr.GraphicLayer("LONG AXES", 2, "osteolens measured long axes", hd.color.CIELabColor(91.1, -48.1, -14.1)),
              hd.pr.GraphicLayer("OSTEOLENS TEXT", 3, "osteolens decision and sizes", hd.color.CIELabColor(97.1, -21.6, 94.5))]
    outlines, axes, texts = [], [], []
    for k, one in enumerate(analysis.lesions, start=1):
        outlines.append(hd.pr.GraphicObject(hd.pr.GraphicTypeValues.POLYLINE, _closed_outline(one), units))
        x0, y0, x1, y1 = one["long_axis_line"]
        axes.append(hd.pr.GraphicObject(hd.pr.GraphicTypeValues.POLYLINE, _pixel_points([[x0, y0], [x1, y1]]), units))
        bx0, by0 = one["box"][:2]
        size = axes_text(one["long_axis_px"], one["short_axis_px"], one["long_axis_mm"], one["short_axis_mm"])
        texts.append(hd.pr.TextObject(f"{k}: {size}", units, anchor_point=tuple(_pixel_points([bx0, by0])),
                                      anchor_point_visible=False, text_justification="LEFT"))
    decision = REFER if analysis.label == "indeterminate" else analysis.label
    header = (f"{model_meta['name']} {model_meta['version']}: {decision} (p normal {analysis.p_normal:.2f}, "
              f"benign {analysis.p_benign:.2f}, malignant {analysis.p_malignant:.2f}). {RESEARCH_NOTICE}")
    rows, cols = int(src.Rows), int(src.Columns)
    texts.append(hd.pr.TextObject(header[:1024], units, bounding_box=(0.0, 0.0, float(cols), max(16.0, rows / 12)),
                                  text_justification="LEFT"))
    annotations = [hd.pr.GraphicAnnotation([src], layer, graphic_objects=objects or None,
                                           text_objects=text or None)
                   for layer, objects, text in ((layers[0], outlines, []), (layers[1], axes, []), (layers[2], [], texts))
                   if objects or text]
    shape = (hd.PresentationLUTShapeValues.INVERSE if src.PhotometricInterpretation == "MONOCHROME1"
             else hd.PresentationLUTShapeValues.IDENTITY)
    pr = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=[src], series_instance_uid=generate_uid(), series_number=904, sop_instance_uid=generate_uid(),
        instance_number=1, manufacturer=MANUFACTURER, manufacturer_model_name=model_meta["name"],
        software_versions=f"osteolens {__version__}", device_serial_number="0", content_label="OSTEOLENS",
        content_description="osteolens analysis (research use only)", graphic_layers=layers, graphic_annotations=annotations,
        presentation_lut_transformation=hd.PresentationLUTTransformation(presentation_lut_shape=shape),
    )
    pr.Laterality = src.get("Laterality", "")  # type 2C: the source's, empty where it records none
    return pr


def _one_kind_of_segment_reference(ds) -> None:
    """Keep the segment number and drop the frame number where an SR item references both.

    PS3.3 C.18.3 allows only one of them; the SEG here has one frame per segment, so the segment
    number says it all.
    """
    for item in getattr(ds, "ReferencedSOPSequence", []):
        if "ReferencedSegmentNumber" in item and "ReferencedFrameNumber" in item:
            del item.ReferencedFrameNumber
    for item in getattr(ds, "ContentSequence", []):
        _one_kind_of_segment_reference(item)


def _algorithm(model_meta: dict):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.AlgorithmIdentificationSequence(
        name=model_meta["name"], version=model_meta["version"], family=codes.cid7162.ArtificialIntelligence,
        source="osteolens", parameters={"sha256": model_meta["sha256"][:64]},
    )


def _age_string(age: str | int) -> str:
    """DICOM's Age String (``048Y``) of a number of years, or an Age String checked; ``""`` for none."""
    text = str(age).strip().upper()
    if not text:
        return ""
    if re.fullmatch(r"\d{1,3}", text) and int(text) <= 130:
        return f"{int(text):03d}Y"
    if re.fullmatch(r"\d{3}[DWMY]", text):
        return text
    raise OsteolensError(f"patient age {age!r}: give years (48) or a DICOM Age String (048Y, 006M, 010W, 020D)")


def write_analysis_dicom(source: str | Path, analysis, model_meta: dict, out_dir: str | Path, overlay_rgb: np.ndarray | None = None) -> dict:
    """Write SEG, SR, presentation state and (when an overlay is given) secondary capture for one analysed
    DICOM image.

    Args:
        source: the analysed DICOM file.
        analysis: its :class:`~osteolens.inference.analyze.Analysis` (mask at the source's size).
        model_meta: the model's metadata (name, version, sha256).
        out_dir: folder for ``seg.dcm``, ``sr.dcm``, ``pr.dcm`` and ``sc.dcm``.
        overlay_rgb: the overlay image for the secondary capture.

    Returns:
        ``{"seg": path, "sr": path, "pr": path, "sc": path or None}``.

    Raises:
        OsteolensError: the source is not a single-frame DICOM image, lacks the UIDs that place the outputs in
            its study, or has a header value the outputs cannot carry (a damaged date, an unknown SOP class: the
            message names highdicom's or pydicom's complaint). Empty patient and study attributes of type 2 are
            added where the source has none.
    """
    try:
        return _write_analysis_dicom(Path(source), analysis, model_meta, out_dir, overlay_rgb)
    except Exception as exc:
        _remove_outputs(Path(out_dir))  # no half set of objects from one image: a PACS would file them as complete
        if isinstance(exc, OsteolensError):
            raise
        # the source header's values go into every object, and highdicom checks each
        raise OsteolensError(f"{source}: its DICOM outputs could not be written from its header "
                             f"({type(exc).__name__}: {exc})") from exc


def _remove_outputs(out_dir: Path) -> None:
    """Remove the objects :func:`write_analysis_dicom` writes from ``out_dir``, and the folder when that empties it."""
    for name in OUTPUT_FILES:
        (out_dir / name).unlink(missing_ok=True)
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()


def _sr_context(hd, codes, model_meta: dict):
    """The SR observation context (osteolens as the observing device) and algorithm identification of a model."""
    from pydicom.uid import generate_uid

    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name=model_meta["name"], manufacturer_name=MANUFACTURER,
            model_name=f"{model_meta['name']} {model_meta['version']}"),
    )
    context = hd.sr.ObservationContext(observer_person_context=None, observer_device_context=observer)
    algo = hd.sr.AlgorithmIdentification(name=model_meta["name"], version=model_meta["version"],
                                         parameters=[f"sha256={model_meta['sha256']}"])
    return context, algo


def _reading_items(hd, codes, algo, reading) -> tuple[list, list]:
    """SR measurements (class probabilities, uncertainty) and evaluations (decision, tumour present, subtype) of an
    image's analysis or a study's reading (``p_normal``, ``p_benign``, ``p_malignant``, ``uncertainty``, ``label``,
    ``subtype``)."""
    def ratio(name: str, value: float, meaning: str):
        return hd.sr.Measurement(name=hd.sr.CodedConcept(name, "99OSTEOLENS", meaning), value=round(float(value), 6),
                                 unit=codes.UCUM.NoUnits, algorithm_id=algo)

    measurements = [
        ratio("P-BENIGN", reading.p_benign, "Probability of benign bone tumour"),
        ratio("P-MALIGNANT", reading.p_malignant, "Probability of malignant bone tumour"),
        ratio("P-NORMAL", reading.p_normal, "Probability of no bone tumour"),
        ratio("UNCERTAINTY", reading.uncertainty, "Normalised predictive entropy"),
    ]
    finding = reading.label in ("benign", "malignant", "indeterminate")
    evaluations = [
        hd.sr.QualitativeEvaluation(
            name=hd.sr.CodedConcept("DECISION", "99OSTEOLENS", "Model decision"),
            value=hd.sr.CodedConcept(reading.label.upper()[:16], "99OSTEOLENS",
                                     "Indeterminate: refer to a specialist" if reading.label == "indeterminate" else reading.label)),
        hd.sr.QualitativeEvaluation(
            name=hd.sr.CodedConcept("TUMOUR-PRESENT", "99OSTEOLENS", "Bone tumour present"),
            value=codes.SCT.Yes if finding else codes.SCT.No),
    ]
    if reading.subtype:
        evaluations.append(hd.sr.QualitativeEvaluation(
            name=hd.sr.CodedConcept("SUBTYPE", "99OSTEOLENS", "Predicted histological subtype"),
            value=hd.sr.CodedConcept(reading.subtype.upper().replace(" ", "-")[:16], "99OSTEOLENS", reading.subtype)))
    return measurements, evaluations


def finding_sites(body_part: str, laterality: str = "") -> list | None:
    """The SR Finding Site (TID 1501/1410) of a body part and side, where the body part names one place that
    :data:`FINDING_SITES` knows (``KNEE``, ``distal femur``, ``hip bone``); else None (``EXTREMITY``, two bones).

    >>> site = finding_sites("distal femur", "L")[0]
    >>> site.value.meaning, site.laterality.meaning, finding_sites("hip bone")[0].value.meaning
    ('Femur', 'Left', 'Pelvis')
    >>> finding_sites("EXTREMITY") is None, finding_sites("ulna;humerus") is None
    (True, True)
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    text = str(body_part or "").lower()
    compact = re.sub(r"[^a-z]", "", text)
    names = {FINDING_SITES[compact]} if compact in FINDING_SITES else \
        {FINDING_SITES[w] for w in re.findall(r"[a-z]+", text) if w in FINDING_SITES}
    if len(names) != 1:
        return None
    side = getattr(codes.SCT, SIDE_CODES[laterality]) if laterality in SIDE_CODES else None
    return [hd.sr.FindingSite(anatomic_location=getattr(codes.SCT, names.pop()), laterality=side)]


def _clinical_items(hd, codes, algo, clinical: dict) -> tuple[list, list]:
    """SR items of the clinical values the model read (``Analysis.clinical``): age (years) as a measurement; sex,
    region(s) and view as evaluations. Each names itself as the model's input, not as the patient's record: the
    value may have come from a clinical table or form as well as from the header."""
    measurements, evaluations = [], []
    try:
        age = float(clinical["age"]["value"]) if "age" in clinical else None
    except (TypeError, ValueError):
        age = None
    if age is not None:
        measurements.append(hd.sr.Measurement(
            name=hd.sr.CodedConcept("INPUT-AGE", "99OSTEOLENS", "Age given to the model"), value=round(age, 2),
            unit=codes.UCUM.Year, algorithm_id=algo))
    sex = str(clinical.get("sex", {}).get("value") or "").strip().upper()[:1]
    if sex in ("M", "F"):
        evaluations.append(hd.sr.QualitativeEvaluation(
            name=hd.sr.CodedConcept("INPUT-SEX", "99OSTEOLENS", "Sex given to the model"),
            value=codes.DCM.Male if sex == "M" else codes.DCM.Female))
    for field, meaning in (("region", "Region given to the model"), ("view", "View given to the model")):
        for value in str(clinical.get(field, {}).get("value") or "").lower().split(";"):
            if value.strip():
                evaluations.append(hd.sr.QualitativeEvaluation(
                    name=hd.sr.CodedConcept(f"INPUT-{field.upper()}", "99OSTEOLENS", meaning),
                    value=hd.sr.CodedConcept(value.strip().upper().replace(" ", "-")[:16], "99OSTEOLENS", value.strip())))
    return measurements, evaluations


def _declare_local_codes(sr) -> None:
    """Name the private coding scheme (99OSTEOLENS) the SR's concepts use."""
    from pydicom.dataset import Dataset

    scheme = Dataset()
    scheme.CodingSchemeDesignator = "99OSTEOLENS"
    scheme.CodingSchemeName = "osteolens local codes"
    scheme.CodingSchemeResponsibleOrganization = "osteolens project"
    sr.CodingSchemeIdentificationSequence = [scheme]


def write_study_sr(sources: list, reading, model_meta: dict, out: str | Path) -> Path:
    """Write one SR (TID 1500) of a study's views read together (:class:`~osteolens.inference.study.StudyReading`):
    its class probabilities, uncertainty, decision and subtype in one measurement group (TID 1501) that names every
    source image, in the study the sources share; its tracking identifier names the side and body part read.

    Args:
        sources: the study's analysed DICOM files.
        reading: the study's reading; ``reading.study`` must be the sources' Study Instance UID.
        model_meta: the model's metadata (name, version, sha256).
        out: the SR file to write.

    Raises:
        OsteolensError: a source is unreadable, or the sources are not all of study ``reading.study`` (a study named
            by a clinical table that is not their DICOM study: an SR can only join one study).
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from osteolens.inference.study import side_and_part

    datasets = []
    for source in sources:
        try:
            ds = read_dicom_dataset(source, stop_before_pixels=True)
        except Exception as exc:
            raise OsteolensError(f"{source}: not a readable DICOM file ({exc})") from exc
        if str(ds.get("StudyInstanceUID", "")).strip() != reading.study:
            raise OsteolensError(f"{source}: is not in DICOM study {reading.study}, so the study's reading cannot be "
                                 "written as one SR in it")
        _fill_type2(ds)
        datasets.append(ds)
    context, algo = _sr_context(hd, codes, model_meta)
    measurements, evaluations = _reading_items(hd, codes, algo, reading)
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=" ".join(
            x for x in ("study reading", side_and_part(reading.laterality, reading.body_part)) if x)),
        finding_type=codes.SCT.Neoplasm, algorithm_id=algo, measurements=measurements,
        qualitative_evaluations=evaluations, finding_sites=finding_sites(reading.body_part, reading.laterality),
        source_images=[hd.sr.SourceImageForMeasurementGroup(d.SOPClassUID, d.SOPInstanceUID) for d in datasets],
    )
    report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=codes.SCT.PlainRadiography,
                                     imaging_measurements=[group], title=codes.DCM.ImagingMeasurementReport)
    sr = hd.sr.Comprehensive3DSR(
        evidence=datasets, content=report, series_number=903, series_instance_uid=generate_uid(),
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER,
        series_description="osteolens study reading: views read together (research use only)",
    )
    _declare_local_codes(sr)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sr.save_as(out)
    return out


def _write_analysis_dicom(source: Path, analysis, model_meta: dict, out_dir: str | Path, overlay_rgb) -> dict:
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from osteolens.inference.study import part_and_side

    try:
        src = read_dicom_dataset(source)
    except Exception as exc:
        raise OsteolensError(f"{source}: not a readable DICOM file ({exc})") from exc
    if analysis.mask is None or analysis.mask.shape != (src.Rows, src.Columns):
        raise OsteolensError(f"{source}: the analysis mask does not match the image size {src.Columns}x{src.Rows}")
    lacking = [k for k in _SOURCE_UIDS if not str(src.get(k, "") or "").strip()]
    if lacking:
        raise OsteolensError(f"{source}: has no {', '.join(lacking)}, so DICOM outputs cannot join its study; "
                             "they need the file's header fixed")
    _fill_type2(src)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    algo = _algorithm(model_meta)
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label="bone tumour",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algo,
    )
    mask = analysis.mask.astype(np.uint8)[None]
    seg = hd.seg.Segmentation(
        source_images=[src], pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description], series_instance_uid=generate_uid(), series_number=901,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name=model_meta["name"], software_versions=f"osteolens {__version__}",
        device_serial_number="0", series_description="osteolens tumour segmentation (research use only)",
        omit_empty_frames=False,
    )
    if "PatientOrientation" not in seg:
        seg.PatientOrientation = ""  # type 2C: a projection radiograph has no orientation/position
    seg.save_as(out_dir / "seg.dcm")

    context, sr_algo = _sr_context(hd, codes, model_meta)
    tracking = hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="bone tumour 1")
    region = hd.sr.ReferencedSegmentationFrame(
        sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, frame_number=1, segment_number=1,
        source_image=hd.sr.SourceImageForSegmentation(src.SOPClassUID, src.SOPInstanceUID),
    )

    measurements, evaluations = _reading_items(hd, codes, sr_algo, analysis)
    # every lesion's area; the largest lesion's axes (its short axis is its narrowest width)
    measurements += _size_measurements(hd, codes, sr_algo, analysis.lesion_area_mm2, analysis.lesion_long_axis_mm,
                                       analysis.lesion_short_axis_mm)
    given, read = _clinical_items(hd, codes, sr_algo, analysis.clinical or {})  # what the model was told
    measurements += given
    evaluations += read
    part, side = part_and_side(analysis.anatomy)
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking, referenced_segment=region, finding_type=codes.SCT.Neoplasm,
        algorithm_id=sr_algo, measurements=measurements, qualitative_evaluations=evaluations,
        finding_sites=finding_sites(part, side),
    )
    groups = [group] + [_lesion_group(hd, codes, src, one, k, sr_algo) for k, one in enumerate(analysis.lesions, start=1)]
    procedure = codes.SCT.PlainRadiography
    report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=procedure,
                                     imaging_measurements=groups, title=codes.DCM.ImagingMeasurementReport)
    sr = hd.sr.Comprehensive3DSR(
        evidence=[src, seg], content=report, series_number=902, series_instance_uid=generate_uid(),
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER,
        series_description="osteolens measurement report (research use only)",
    )
    _one_kind_of_segment_reference(sr)
    _declare_local_codes(sr)
    sr.save_as(out_dir / "sr.dcm")

    presentation_state(src, analysis, model_meta).save_as(out_dir / "pr.dcm")
    sc_path = None
    if overlay_rgb is not None:
        sc_path = out_dir / "sc.dcm"
        secondary_capture(src, overlay_rgb, "osteolens overlay (research use only)").save_as(sc_path, enforce_file_format=True)
    return {"seg": str(out_dir / "seg.dcm"), "sr": str(out_dir / "sr.dcm"), "pr": str(out_dir / "pr.dcm"),
            "sc": str(sc_path) if sc_path else None}
