"""``osteolens analyze``: radiographs in, predictions, masks, overlays and a report out.

:func:`analyze_image` is the core (an array in, an :class:`Analysis` out) that the CLI, the
service and the benchmarks share; :func:`analyze` runs it over files and folders and writes:

- ``predictions.csv``: one row per input (columns :data:`PREDICTION_COLUMNS`);
- ``masks/<stem>.png``: binary tumour mask (0/255) at the input's own size;
- ``<stem>.json``: everything about that image; ``<stem>_overlay.png``: mask outline, boxes,
  heat map;
- ``report.html``: one self-contained page for the batch;
- ``studies.csv``: where images name their study (a DICOM file's Study Instance UID, or a
  ``study`` column in the clinical table), one reading per study of its views together
  (:mod:`osteolens.inference.study`).

A file that cannot be read becomes a row with ``status=error`` and its message; the batch
goes on. An ``ok`` row's ``error`` is empty, except when ``--dicom-out`` could not write a DICOM
input's outputs (its header cannot carry them): the analysis stands, and ``error`` says why its
``dicom/<stem>/`` objects are missing.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np

from osteolens import RESEARCH_NOTICE, __version__
from osteolens.data.clinical import clinical_with_header, encode_clinical
from osteolens.errors import ImageReadError, OsteolensError
from osteolens.inference.batch_inputs import (BATCH_OUTPUT_HEADER, clinical_for_inputs, collect_inputs, left_out_note,
                                              no_images_message, read_clinical_csv, unique_stems, unused_rows_note)
from osteolens.inference.postprocess import (MaskPostprocess, flip_mean_probability, lesions_for_label, to_input_size,
                                              working_shape)
from osteolens.inference.lesion_malignancy import combined_probabilities
from osteolens.inference.second_look import combine, look_at_lesions
from osteolens.inference.study import part_and_side, view_anatomy
from osteolens.explain.saliency import saliency_map
from osteolens.io.images import ImageProperties, read_image, save_png, to_unit_grey
from osteolens.models.registry import DEFAULT_MODEL, LoadedModel, load_model
from osteolens.training.calibration import normalised_entropy, softmax
from osteolens.transforms.preprocess import crop_settings, network_box, network_grey, normalise, preprocess, resize

PREDICTION_COLUMNS = (
    *BATCH_OUTPUT_HEADER, "label", "subtype", "p_subtype",
    "uncertainty", "lesion_area_px", "lesion_area_mm2", "boxes",
    "lesion_long_axis_px", "lesion_short_axis_px", "lesion_long_axis_mm", "lesion_short_axis_mm",
    "box_scores", "mask", "study", "body_part", "laterality",
)
REFER = "indeterminate: refer to a specialist"
DICOM_OUTPUTS_FAILED = "analysed, but its DICOM outputs were not written"
MIN_SIDE_PX = 64  # smaller than any radiograph; the network reads a 256-px view
MAX_ASPECT = 10.0  # long-leg and spine films reach about 4:1
#: the most pixels a radiograph analysed may have, refused before decoding. The largest digital radiographs (stitched
#: long-leg and whole-spine films) are under about 60 megapixels; an analysis needs about 33 bytes a pixel, so this
#: caps one at about 3.3 GB, where the reader's general limit (400 megapixels, for plain-image slides) would allow 13
MAX_RADIOGRAPH_PIXELS = 100_000_000


ARRAY_FIELDS = ("mask", "saliency", "grey", "overlay", "mask_probability", "thumbnail")


@dataclass
class Analysis:
    """The result for one image."""

    image: str
    status: str = "ok"
    error: str = ""
    p_normal: float | None = None
    p_benign: float | None = None
    p_malignant: float | None = None
    label: str = ""
    subtype: str = ""
    p_subtype: float | None = None
    uncertainty: float | None = None
    lesion_area_px: int | None = None
    lesion_area_mm2: float | None = None
    lesion_long_axis_px: float | None = None
    lesion_short_axis_px: float | None = None
    lesion_long_axis_mm: float | None = None
    lesion_short_axis_mm: float | None = None
    lesion_long_axis_line: list | None = None
    boxes: list = field(default_factory=list)
    box_scores: list = field(default_factory=list)
    #: the mask's file, relative to the batch folder (``masks/<stem>.png``), once :func:`analyze` has written it
    mask_file: str = ""
    lesions: list = field(default_factory=list)
    subtype_probabilities: dict = field(default_factory=dict)
    spacing_mm: list | None = None
    content_box: list | None = None
    clinical_missing: list = field(default_factory=list)
    #: the clinical values the model read, each with where it came from (a clinical table's line, the form,
    #: the DICOM attribute, the site): ``{field: {"value", "from"}}``
    clinical: dict = field(default_factory=dict)
    #: the refiner's malignancy logit of the top lesion's view, the view (x0, y0, x1, y1, in the pixels of the
    #: working map) and the whole-image probabilities before they were combined (models whose refiner reads it)
    lesion_malignancy: dict | None = None
    #: the study the image belongs to (the clinical table's ``study``, else a DICOM file's Study Instance UID)
    study: str = ""
    #: the body part and side the image shows, each with where it came from (a study reads its views of one
    #: body part and side together: :func:`~osteolens.inference.study.view_anatomy`)
    anatomy: dict = field(default_factory=dict)
    seconds: float | None = None
    mask: np.ndarray | None = field(default=None, repr=False)
    saliency: np.ndarray | None = field(default=None, repr=False)
    grey: np.ndarray | None = field(default=None, repr=False)
    overlay: np.ndarray | None = field(default=None, repr=False)
    mask_probability: np.ndarray | None = field(default=None, repr=False)
    thumbnail: np.ndarray | None = field(default=None, repr=False)

    def row(self) -> dict:
        """The ``predictions.csv`` row."""
        def r(x, nd=6):
            return "" if x is None else (round(x, nd) if isinstance(x, float) else x)

        return {
            "image": self.image, "status": self.status, "error": self.error,
            "p_normal": r(self.p_normal), "p_benign": r(self.p_benign), "p_malignant": r(self.p_malignant),
            "label": self.label, "subtype": self.subtype, "p_subtype": r(self.p_subtype),
            "uncertainty": r(self.uncertainty), "lesion_area_px": r(self.lesion_area_px),
            "lesion_area_mm2": r(self.lesion_area_mm2, 2),
            "boxes": ";".join(" ".join(str(int(v)) for v in b) for b in self.boxes),
            "lesion_long_axis_px": r(self.lesion_long_axis_px, 1), "lesion_short_axis_px": r(self.lesion_short_axis_px, 1),
            "lesion_long_axis_mm": r(self.lesion_long_axis_mm, 1), "lesion_short_axis_mm": r(self.lesion_short_axis_mm, 1),
            "box_scores": ";".join(f"{s:.6g}" for s in self.box_scores), "mask": self.mask_file,
            "study": self.study, **dict(zip(("body_part", "laterality"), part_and_side(self.anatomy))),
        }

    def to_json(self, model: LoadedModel | None = None, extra: dict | None = None) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ARRAY_FIELDS}
        d["decision"] = REFER if self.label == "indeterminate" else self.label
        d["notice"] = RESEARCH_NOTICE
        d["software"] = f"osteolens {__version__}"
        if model is not None:
            d["model"] = {"name": model.name, "version": model.metadata["version"], "sha256": model.metadata["sha256"]}
        d.update(extra or {})
        return d

    @classmethod
    def from_json(cls, data: dict, overlay: np.ndarray | None = None) -> "Analysis":
        """Rebuild a result from its JSON (arrays other than ``overlay`` are not stored there)."""
        known = {f.name for f in fields(cls)} - set(ARRAY_FIELDS)
        return cls(**{k: v for k, v in data.items() if k in known}, overlay=overlay)


def analyze_image(model: LoadedModel, arr: np.ndarray, props: ImageProperties, clinical: dict | None = None) -> Analysis:
    """Analyse one image already read by :func:`~osteolens.io.images.read_image`.

    Args:
        model: a loaded model.
        arr: the pixel array.
        props: its properties (spacing, value range).
        clinical: optional ``{"age", "sex", "region", "view", "site"}`` for models that use them; a DICOM
            header's values (``props.header_clinical``) fill what is not given, and the site stands in for a
            region neither gives (:func:`~osteolens.data.clinical.clinical_with_header`).

    Returns:
        The :class:`Analysis` (mask and saliency at the input's size). Where the reader found
        the image inside a padded frame (``props.content_box``), or the model's preprocessing
        crops flat borders (``crop_uniform_border``; noisy ones too with ``crop_noisy_border``) and the image has one, the network reads
        only the box inside, and the mask, saliency and boxes are placed back in the frame
        (``Analysis.content_box`` records the box).
    """
    check_modality(props.modality, props.path)
    t0 = time.perf_counter()
    meta = model.metadata
    calib = meta["calibration"]
    size = model.image_size
    framed = to_unit_grey(arr, props)
    box = network_box(framed, props.content_box, *crop_settings(meta["preprocessing"]))
    x_off, y_off, x_end, y_end = box or (0, 0, framed.shape[1], framed.shape[0])
    grey = framed[y_off:y_end, x_off:x_end]
    check_analysable(grey, props.path, framed.shape)
    h, w = grey.shape
    seen = network_grey(grey, size)  # what the network reads; a second look cuts its views from it
    x = normalise(seen)
    batch = np.stack([x, x[..., ::-1]])
    clin_vec, missing, used = None, [], {}
    try:
        anatomy = view_anatomy(clinical, props.header_clinical)
    except ValueError as exc:
        where = f" ({clinical['_where']})" if clinical and clinical.get("_where") else ""
        raise OsteolensError(f"clinical data for {Path(props.path).name}{where}: {exc}") from exc
    if model.uses_clinical:
        c, used = clinical_with_header(clinical, props.header_clinical)
        try:
            vec, missing = encode_clinical(c["age"], c["sex"], c["region"], c["view"])
        except ValueError as exc:
            where = f" ({c['_where']})" if c.get("_where") else ""
            raise OsteolensError(f"clinical data for {Path(props.path).name}{where}: {exc}") from exc
        clin_vec = np.stack([vec, vec])
    out = model.run(np.ascontiguousarray(batch), clin_vec)
    logits = out["class_logits"].mean(axis=0)
    probs = softmax(logits, calib["temperature"])
    uncertainty = float(normalised_entropy(probs))
    mask_logits = out["mask_logits"]
    mask_size = int(calib.get("mask_input_size", size))
    if mask_size != size:  # the mask read from an enlarged view (chosen on validation; small lesions gain)
        xm = preprocess(grey, mask_size)
        mask_logits = model.run(np.ascontiguousarray(np.stack([xm, xm[..., ::-1]])), clin_vec)["mask_logits"]
    mask_prob = flip_mean_probability(mask_logits)
    label = decide_label(probs, uncertainty, calib)
    p_tumour = float(probs[1] + probs[2])
    work = working_shape((h, w))  # a large radiograph is post-processed at a smaller size, then mask and boxes scaled up
    work_prob = resize(mask_prob.astype(np.float32), work)
    look, lesion_reading = calib.get("second_look"), None
    reads_malignancy = bool(look) and look.get("network") == "refiner" and model.reads_lesion_malignancy
    if look and (label != "normal" or reads_malignancy):  # a zoomed-in look at the top lesion (chosen on validation)
        views, view_probs, malignancy = look_at_lesions(model, grey, seen, work_prob, p_tumour, clin_vec, look)
        if malignancy is not None and len(malignancy):
            lesion_reading = {"logit": round(float(malignancy[0]), 6), "view": [int(v) for v in views[0]],
                              "whole_image": [round(float(p), 6) for p in probs]}
            if "lesion_malignancy" in calib:  # tumour's split into benign and malignant read again from the view
                probs = combined_probabilities(probs, malignancy[0], calib["lesion_malignancy"])
                uncertainty = float(normalised_entropy(probs))
                label = decide_label(probs, uncertainty, calib)
        if views and label != "normal":
            work_prob = combine(work_prob, views, view_probs, look["combine"])
    mask, boxes, scores = lesions_for_label(work_prob, label, p_tumour, MaskPostprocess.from_calibration(calib))
    spacing = props.spacing_mm
    lesions = measure_lesions(mask, boxes, (h, w), spacing)
    mask, boxes = to_input_size(mask, boxes, (h, w))
    lesions = [{"box": list(map(int, b)), "score": sc, **one} for b, sc, one in zip(boxes, scores, lesions)]
    full_prob = resize(work_prob, (h, w))
    sub_probs = softmax(out["subtype_logits"].mean(axis=0))
    names = meta["subtypes"]
    k = 1 + int(np.argmax(probs[1:]))  # the more likely tumour class names the subtype and explains "why tumour"
    subtype, p_sub = choose_subtype(sub_probs, names, ("benign", "malignant")[k - 1]) if label != "normal" and p_tumour > 0 \
        else ("", None)
    cam = (out["cam"][0, k] + out["cam"][1, k][:, ::-1]) / 2
    sal = saliency_map(cam, (h, w))
    area = int(mask.sum())
    if grey.shape != framed.shape:
        mask, sal, full_prob = (_in_frame(a, framed.shape, x_off, y_off) for a in (mask, sal, full_prob))
        lesions = [_shift_lesion(one, x_off, y_off) for one in lesions]
    return Analysis(
        image=Path(props.path).name, p_normal=float(probs[0]), p_benign=float(probs[1]), p_malignant=float(probs[2]),
        label=label, subtype=subtype, p_subtype=p_sub, uncertainty=uncertainty, lesion_area_px=area,
        lesion_area_mm2=float(area * spacing[0] * spacing[1]) if spacing else None, **largest_lesion_fields(lesions),
        boxes=[one["box"] for one in lesions], box_scores=scores, lesions=lesions,
        subtype_probabilities={n: round(float(p), 6) for n, p in zip(names, sub_probs)},
        spacing_mm=list(spacing) if spacing else None, clinical_missing=missing, clinical=used, anatomy=anatomy,
        content_box=list(box) if box else None, lesion_malignancy=lesion_reading,
        seconds=round(time.perf_counter() - t0, 4), mask=mask, saliency=sal, grey=framed, mask_probability=full_prob,
    )


LESION_FIELDS = ("area_px", "area_mm2", "long_axis_px", "short_axis_px", "long_axis_mm", "short_axis_mm",
                 "long_axis_line", "outline")


def measure_lesions(mask: np.ndarray, boxes: list, shape: tuple[int, int], spacing_mm=None) -> list[dict]:
    """Each lesion (8-connected component) of ``mask``, measured, in the order of its ``boxes``.

    ``mask`` and ``boxes`` are the post-processing's (:func:`~osteolens.inference.postprocess.
    lesion_components`), possibly at its smaller working size for an image of ``shape``: every
    figure is given in the image's own pixels, and in mm with its ``(row, column)`` spacing
    (None without one). Per lesion:

    - ``area_px`` (and ``area_mm2``): its pixel count, scaled to the image;
    - ``long_axis_px``/``short_axis_px`` (and ``_mm``): its maximum and minimum Feret diameters
      (:func:`~osteolens.volumes.measure.planar_axes`); ``long_axis_line``: ``[x0, y0, x1, y1]``;
    - ``outline``: its outer contour, ``[[x, y], ...]``, pixel centres of its border pixels.

    >>> m = np.zeros((100, 100), bool); m[40:50, 20:61] = True; m[80:84, 80:84] = True
    >>> a, b = measure_lesions(m, [(80, 80, 84, 84), (20, 40, 61, 50)], (200, 200), (0.1, 0.1))
    >>> a["area_px"], a["long_axis_px"], b["area_px"], b["long_axis_mm"], b["long_axis_line"]
    (64, 8.49, 1640, 8.2, [40, 80, 120, 98])
    """
    import cv2
    from scipy import ndimage

    from osteolens.volumes.measure import planar_axes

    labels, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    scale = (shape[0] / mask.shape[0], shape[1] / mask.shape[1])
    by_box = {}
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        by_box.setdefault((sl[1].start, sl[0].start, sl[1].stop, sl[0].stop), []).append(k)

    def in_image(r, c) -> list[int]:  # a working pixel's centre, in the image's pixels (x, y)
        return [round((c + 0.5) * scale[1] - 0.5), round((r + 0.5) * scale[0] - 0.5)]

    lesions = []
    for box in boxes:
        x0, y0, x1, y1 = (int(v) for v in box)
        ks = by_box.get((x0, y0, x1, y1))
        if not ks:
            raise ValueError(f"no lesion of the mask has the box {box}")
        part = labels[y0:y1, x0:x1] == ks.pop(0)
        px = planar_axes(part, scale)
        area = int(part.sum())
        one = dict.fromkeys(LESION_FIELDS)
        one.update(area_px=round(area * scale[0] * scale[1]), long_axis_px=round(px.long_axis, 2),
                   short_axis_px=round(px.short_axis, 2))
        if spacing_mm:
            mm = planar_axes(part, (scale[0] * spacing_mm[0], scale[1] * spacing_mm[1]))
            one.update(area_mm2=round(area * scale[0] * scale[1] * spacing_mm[0] * spacing_mm[1], 2),
                       long_axis_mm=round(mm.long_axis, 2), short_axis_mm=round(mm.short_axis, 2))
        r0, c0, r1, c1 = px.ends
        one["long_axis_line"] = in_image(r0 + y0, c0 + x0) + in_image(r1 + y0, c1 + x0)
        contours, _ = cv2.findContours(part.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        contour = max(contours, key=len)[:, 0]  # (x, y) of border pixels, corners only along straight runs
        one["outline"] = [in_image(y + y0, x + x0) for x, y in contour.tolist()]
        lesions.append(one)
    return lesions


def largest_lesion_fields(lesions: list[dict]) -> dict:
    """The ``lesion_*_axis_*`` fields of :class:`Analysis`: those of the lesion with the largest area.

    >>> largest_lesion_fields([{"area_px": 4, "long_axis_px": 2.0}, {"area_px": 9, "long_axis_px": 3.0}])["lesion_long_axis_px"]
    3.0
    """
    names = ("long_axis_px", "short_axis_px", "long_axis_mm", "short_axis_mm", "long_axis_line")
    largest = max(lesions, key=lambda one: one["area_px"], default={})
    return {f"lesion_{n}": largest.get(n) for n in names}


def _shift_lesion(one: dict, x: int, y: int) -> dict:
    """A lesion's box, line and outline moved right by ``x`` and down by ``y`` pixels."""
    x0, y0, x1, y1 = one["box"]
    a0, b0, a1, b1 = one["long_axis_line"]
    return {**one, "box": [x0 + x, y0 + y, x1 + x, y1 + y], "long_axis_line": [a0 + x, b0 + y, a1 + x, b1 + y],
            "outline": [[u + x, v + y] for u, v in one["outline"]]}


def _in_frame(a: np.ndarray, shape: tuple[int, int], x: int, y: int) -> np.ndarray:
    """``a`` placed at column ``x``, row ``y`` of a zero array of ``shape``."""
    out = np.zeros(shape, dtype=a.dtype)
    out[y:y + a.shape[0], x:x + a.shape[1]] = a
    return out


#: DICOM modalities that are not projection radiographs: their images get no radiograph answer
NOT_RADIOGRAPH_MODALITIES = {
    "CT": "a CT image", "MR": "an MR image", "PT": "a PET image", "NM": "a nuclear-medicine image",
    "US": "an ultrasound image", "MG": "a mammogram", "SM": "a slide-microscopy image", "XC": "an external-camera photo",
    "OP": "an ophthalmic photo", "OPT": "an ophthalmic tomogram", "ES": "an endoscopy image", "GM": "a general microscopy image",
    "IVUS": "an intravascular ultrasound image", "IVOCT": "an intravascular OCT image", "RTIMAGE": "a radiotherapy portal image",
}


def write_study_srs(readings: list, results: list[Analysis], dicom_sources: dict, model_meta: dict, out: Path) -> None:
    """``study_dicom/<n>_sr.dcm`` for the n-th study reading of two or more analysed images that are all DICOM files
    of that very DICOM study (a study named by a clinical table can span several; one image's own SR already holds a
    one-image study's reading); a reading whose SR its headers cannot carry keeps its probabilities, and its
    ``error`` says why no SR was written."""
    from osteolens.inference.study import reading_key
    from osteolens.io.dicom_write import write_study_sr

    analysed: dict[tuple, list[int]] = {}  # reading key -> indices of its analysed images
    for i, r in enumerate(results):
        if r.study and r.status == "ok":
            analysed.setdefault(reading_key(r.study, r.anatomy), []).append(i)
    for n, reading in enumerate(readings, start=1):
        members = analysed.get(reading.key, [])
        if len(members) < 2 or not all(dicom_sources.get(i, (None, None))[1] == reading.study for i in members):
            continue
        try:
            write_study_sr([dicom_sources[i][0] for i in members], reading, model_meta, out / "study_dicom" / f"{n}_sr.dcm")
            reading.sr_file = f"study_dicom/{n}_sr.dcm"
        except Exception as exc:  # the study's reading stands without its SR
            reading.error = f"{DICOM_OUTPUTS_FAILED}: {exc}"


def decide_label(probs: np.ndarray, uncertainty: float, calib: dict) -> str:
    """``indeterminate`` above the uncertainty threshold, else ``malignant`` at or above the malignant threshold,
    else the likelier of ``normal`` and ``benign``.

    >>> decide_label(np.array([0.5, 0.2, 0.3]), 0.4, {"uncertainty_threshold": 0.9, "malignant_threshold": 0.25})
    'malignant'
    """
    if uncertainty > calib["uncertainty_threshold"]:
        return "indeterminate"
    if probs[2] >= calib["malignant_threshold"]:
        return "malignant"
    return ("normal", "benign")[int(np.argmax(probs[:2]))]


def check_modality(modality: str | None, path: str | Path) -> None:
    """Refuse a DICOM image whose Modality says it is not a projection radiograph.

    CR, DX, RG, RF, OT and files without a Modality are read as radiographs; the modalities in
    :data:`NOT_RADIOGRAPH_MODALITIES` (a CT slice, an MR image, a PET image, ...) are refused:
    the model has only seen radiographs and would give such an image a made-up answer.

    >>> check_modality("CT", "slice.dcm")
    Traceback (most recent call last):
    ...
    osteolens.errors.ImageReadError: slice.dcm: a CT image (DICOM Modality CT), not a projection radiograph: the radiograph model reads CR, DX and other plain X-ray images only; for CT, MR or PET volumes use 'osteolens volume report'
    >>> check_modality("DX", "knee.dcm")
    """
    if modality in NOT_RADIOGRAPH_MODALITIES:
        raise ImageReadError(path, f"{NOT_RADIOGRAPH_MODALITIES[modality]} (DICOM Modality {modality}), not a projection "
                             "radiograph: the radiograph model reads CR, DX and other plain X-ray images only; for CT, MR or "
                             "PET volumes use 'osteolens volume report'")


def check_analysable(grey: np.ndarray, path: str | Path, stored_shape: tuple[int, ...] | None = None) -> None:
    """Refuse an image that cannot be a radiograph, rather than give it a made-up answer.

    ``stored_shape`` is the file's own ``(H, W)`` where ``grey`` is the part inside cut borders, so
    that a message about the size names both.

    Raises:
        ImageReadError: shorter side under :data:`MIN_SIDE_PX`, sides more than
            :data:`MAX_ASPECT` to one, every pixel the same value (a blank image), or only two
            values (a mask, or a black-and-white drawing or dithered print of a radiograph).

    >>> check_analysable(np.zeros((300, 200)), "blank.png")
    Traceback (most recent call last):
    ...
    osteolens.errors.ImageReadError: blank.png: image is blank (every pixel has the same value)
    >>> mask = np.zeros((300, 200)); mask[100:150, 50:90] = 1.0
    >>> check_analysable(mask, "IMG000004_mask.png")
    Traceback (most recent call last):
    ...
    osteolens.errors.ImageReadError: IMG000004_mask.png: image has only two grey levels (0 and 255 of 255): a mask or a black-and-white picture, not a radiograph
    >>> check_analysable(np.zeros((60, 1981)), "strip.png", stored_shape=(60, 2000))
    Traceback (most recent call last):
    ...
    osteolens.errors.ImageReadError: strip.png: image is 1981 x 60 px inside its cut borders (2000 x 60 as stored); a radiograph needs at least 64 px a side
    """
    h, w = grey.shape[:2]
    size = f"{w} x {h} px"
    if stored_shape is not None and tuple(stored_shape[:2]) != (h, w):
        size += f" inside its cut borders ({stored_shape[1]} x {stored_shape[0]} as stored)"
    if min(h, w) < MIN_SIDE_PX:
        raise ImageReadError(path, f"image is {size}; a radiograph needs at least {MIN_SIDE_PX} px a side")
    if max(h, w) > MAX_ASPECT * min(h, w):
        raise ImageReadError(path, f"image is {size}, more than {MAX_ASPECT:g} to 1; not a radiograph")
    if float(np.ptp(grey)) == 0.0:
        raise ImageReadError(path, "image is blank (every pixel has the same value)")
    step = max(1, int(np.sqrt(grey.size / 65536)))  # a radiograph shows many levels in any sample of its pixels
    if len(np.unique(grey[::step, ::step])) <= 2 and len(levels := np.unique(grey)) == 2:
        raise ImageReadError(path, f"image has only two grey levels ({levels[0] * 255:.0f} and {levels[1] * 255:.0f} of 255): "
                                   "a mask or a black-and-white picture, not a radiograph")


def choose_subtype(sub_probs: np.ndarray, names: list[str], tumour_class: str) -> tuple[str, float]:
    """The most likely subtype of ``tumour_class`` and its probability among that class's subtypes.

    :func:`analyze_image` passes the more likely tumour class by the class head (benign or
    malignant), not the decided label: the label calls an image malignant from a low threshold (the
    sensitive operating point), and forcing the subtype into that class named the wrong subtype for
    benign tumours flagged malignant (on the validation split, subtype accuracy 0.519 that way
    against 0.582 this way, docs/radiograph_model.md). So a flagged image may carry a benign subtype.

    Example:
        >>> names = ["osteochondroma", "giant cell tumor", "osteosarcoma"]
        >>> choose_subtype(np.array([0.2, 0.3, 0.5]), names, "benign")
        ('giant cell tumor', 0.6)
    """
    from osteolens.data.manifest import SUBTYPES  # only here: the manifest module imports pandas

    allowed = [i for i, n in enumerate(names) if SUBTYPES[n] == tumour_class]
    best = max(allowed, key=lambda i: sub_probs[i])
    return names[best], float(sub_probs[best] / sub_probs[allowed].sum())


def warm_up(model: LoadedModel) -> float:
    """Analyse a grey ramp image in memory and return the seconds it took.

    A first analysis pays for what later ones do not (lazy imports, ONNX Runtime's first
    allocations): about 0.5 s on 2 cores. A service calls this when it starts, so that its first
    client does not.
    """
    size = model.image_size
    props = ImageProperties(path="warm-up", format="png", shape=(size, size), dtype="uint8", bits=8, channels=1,
                            photometric="MONOCHROME2")
    t0 = time.perf_counter()
    ramp = np.tile(np.linspace(64, 192, size).astype(np.uint8), (size, 1))  # not blank: blank images are refused
    render_overlay(analyze_image(model, ramp, props, {}))
    return time.perf_counter() - t0


def render_overlay(res: Analysis) -> np.ndarray:
    """The overlay picture of a result: grey image, heat map, mask outline, boxes, decision caption."""
    from osteolens.explain.overlay import draw_overlay

    caption = f"{res.label}  N {res.p_normal:.2f} B {res.p_benign:.2f} M {res.p_malignant:.2f}"
    return draw_overlay(res.grey, res.mask, res.boxes, res.saliency, caption, axis_line=res.lesion_long_axis_line)


def analyze(inputs: list[str | Path], out: str | Path, model: str | Path | LoadedModel = DEFAULT_MODEL,
            clinical_csv: str | Path | None = None, progress: Callable[[int, int], None] | None = None,
            overlays: bool = True, clinical: dict[str, dict] | None = None, layers: bool | str = False,
            dicom_out: bool = False, report: bool = True, keep_arrays: bool = False,
            notes: list[str] | None = None, studies: list | None = None) -> list[Analysis]:
    """Analyse files and folders and write the outputs listed in the module docstring.

    Args:
        inputs: files and/or folders.
        out: output folder.
        model: registered name, model folder or a loaded model.
        clinical_csv: optional CSV with ``image, age, sex, site`` (and ``region``, ``view``).
        progress: ``progress(done, total)`` after each image.
        overlays: write overlay PNGs (and the report's thumbnails).
        clinical: clinical fields by image file name or path (added to, and overriding, the
            CSV's); rows are matched to inputs by :func:`~osteolens.inference.batch_inputs.clinical_for_inputs`.
        layers: also write ``layers/<stem>_image.png`` (the grey input) and
            ``layers/<stem>_saliency.png`` for viewers that compose the layers themselves;
            ``"npy"`` writes them as uint8 ``.npy`` arrays instead (no PNG encoding: the service
            turns them into PNGs, and the overlay, only when a client asks).
        dicom_out: for DICOM inputs, also write ``dicom/<stem>/seg.dcm``, ``sr.dcm`` (TID 1500),
            ``pr.dcm`` (presentation state) and ``sc.dcm`` (overlay), in the source's study.
        report: write ``report.html`` (the service writes it when first asked for).
        keep_arrays: keep each result's mask, saliency, grey image and overlay in memory. Off by
            default: they are in the files written, and a full-size radiograph's take about 100 MB,
            so a batch of a few hundred films would not fit in memory; the report keeps a
            384-px thumbnail per image instead.
        notes: when a list is given, lines about the batch as a whole are appended to it (what the
            folders held that was left out, clinical rows that name no input).
        studies: when a list is given, each study's reading (:class:`~osteolens.inference.study.StudyReading`)
            is appended to it; ``studies.csv`` is written whenever an image names its study.

    Returns:
        One :class:`Analysis` per input, in input order (an unreadable or refused file is an
        ``error`` row; the batch goes on); its arrays are ``None`` unless ``keep_arrays``.

    Raises:
        OsteolensError: nothing to analyse (folders without image-like files, and no file given
            by its path); nothing is written then.
    """
    from osteolens.inference.study import read_studies, write_studies_csv
    from osteolens.reporting.html import report_thumbnail, write_batch_report

    out = Path(out)
    left_out: list[Path] = []
    files = collect_inputs(inputs, left_out, output=out)
    if not files:  # before anything is loaded or written
        raise OsteolensError(no_images_message(inputs, left_out))
    table = {**(read_clinical_csv(clinical_csv) if clinical_csv else {}), **(clinical or {})}
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    (out / "masks").mkdir(parents=True, exist_ok=True)  # only once inputs, clinical data and model are known good
    rows, unused = clinical_for_inputs(files, table)
    if notes is not None and left_out:
        notes.append(left_out_note(left_out))
    if notes is not None and unused:
        notes.append(unused_rows_note(unused))
    results: list[Analysis] = []
    dicom_sources: dict[int, tuple[Path, str | None]] = {}  # result index -> (DICOM file, its Study Instance UID)
    for i, (path, stem, row) in enumerate(zip(files, unique_stems(files), rows)):
        study = (row.get("study") or "") if isinstance(row, dict) else ""
        try:
            if isinstance(row, str):
                raise OsteolensError(f"{path}: {row}")
            arr, props = read_image(path, MAX_RADIOGRAPH_PIXELS, "a radiograph analysis reads")
            study = study or props.study_uid or ""  # a file refused after reading is still listed with its study
            res = analyze_image(loaded, arr, props, row)
            res.study = study
            res.mask_probability = None  # only callers of analyze_image need it; a batch keeps less
            res.mask_file = f"masks/{stem}.png"
            save_png((res.mask * 255).astype(np.uint8), out / res.mask_file)
            if layers:
                (out / "layers").mkdir(exist_ok=True)
                for name, arr in (("image", res.grey), ("saliency", res.saliency)):
                    pixels = (arr * 255).round().astype(np.uint8)
                    if layers == "npy":
                        np.save(out / "layers" / f"{stem}_{name}.npy", pixels)
                    else:
                        save_png(pixels, out / "layers" / f"{stem}_{name}.png")
            is_dicom = props.format == "dicom"
            if is_dicom:
                dicom_sources[i] = (path, props.study_uid)
            overlay = render_overlay(res) if overlays or (dicom_out and is_dicom) else None
            res.overlay = overlay
            if overlays:
                save_png(overlay, out / f"{stem}_overlay.png")
            dicom_files = None
            if dicom_out and is_dicom:
                from osteolens.io.dicom_write import write_analysis_dicom

                try:
                    dicom_files = write_analysis_dicom(path, res, loaded.metadata, out / "dicom" / stem, overlay)
                except OsteolensError as exc:  # the header cannot carry the outputs; the analysis stands
                    res.error = f"{DICOM_OUTPUTS_FAILED}: {exc}"
            extra = {"input": {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                               "properties": props.to_dict()},
                     "overlay_file": f"{stem}_overlay.png" if overlays else None,
                     "dicom_files": dicom_files}
            (out / f"{stem}.json").write_text(json.dumps(res.to_json(loaded, extra), indent=2) + "\n")
            if report and overlays:
                res.thumbnail = report_thumbnail(overlay)
            if not keep_arrays:
                res.mask = res.saliency = res.grey = res.overlay = None
        except Exception as exc:  # one file's failure, named; the batch goes on
            message = str(exc) if isinstance(exc, OsteolensError) else f"{path}: unexpected {type(exc).__name__}: {exc}"
            res = Analysis(image=path.name, status="error", error=message, study=study)
            (out / f"{stem}.json").write_text(json.dumps(res.to_json(loaded, {"input": {"path": str(path)}}), indent=2) + "\n")
        results.append(res)
        if progress:
            progress(i + 1, len(files))
    dicom_failures = [r.image for r in results if r.status == "ok" and r.error]  # an ok row's error: DICOM outputs
    if notes is not None and dicom_failures:
        notes.append(f"{len(dicom_failures)} image(s) analysed without their DICOM outputs, which their headers "
                     f"could not carry ({', '.join(dicom_failures)}): see the error column")
    with open(out / "predictions.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(PREDICTION_COLUMNS))
        writer.writeheader()
        for r in results:
            writer.writerow(r.row())
    readings = read_studies(results, loaded.metadata["calibration"], loaded.metadata["subtypes"])
    if dicom_out:
        write_study_srs(readings, results, dicom_sources, loaded.metadata, out)
    if readings:
        write_studies_csv(readings, out / "studies.csv")
    if studies is not None:
        studies.extend(readings)
    if report:
        write_batch_report(results, loaded, out / "report.html", overlays=overlays, studies=readings)
    return results
