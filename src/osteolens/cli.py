"""The ``osteolens`` command: one thin command per library function.

Every command parses its arguments, calls one function of the library and prints what it
returned. Errors osteolens raises on purpose are printed in red with the file and the
problem, and the command exits with status 2.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from osteolens import RESEARCH_NOTICE, __version__
from osteolens.errors import OsteolensError

app = typer.Typer(
    help=f"osteolens {__version__}: AI-assisted analysis of bone tumours in medical images.\n\n{RESEARCH_NOTICE}",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Datasets: import into a manifest, verify, split, summarise.", no_args_is_help=True)
app.add_typer(data_app, name="data")
pathology_app = typer.Typer(help="Histopathology: tile classifier, whole-slide necrosis rate.", no_args_is_help=True)
app.add_typer(pathology_app, name="pathology")
score_app = typer.Typer(help="Clinical scores: Mirels (fracture risk), SINS (spinal instability).", no_args_is_help=True)
app.add_typer(score_app, name="score")
dicom_app = typer.Typer(help="DICOM helpers.", no_args_is_help=True)
app.add_typer(dicom_app, name="dicom")
pacs_app = typer.Typer(help="PACS (Orthanc, DICOMweb): analyse a study, watch for new studies.", no_args_is_help=True)
app.add_typer(pacs_app, name="pacs")
radiomics_app = typer.Typer(help="IBSI-compliant radiomics features of a lesion (2-D or 3-D).", no_args_is_help=True)
app.add_typer(radiomics_app, name="radiomics")
volume_app = typer.Typer(help="3-D lesions (CT/MR/PET): volume, diameters, SUV, modalities on one grid.", no_args_is_help=True)
app.add_typer(volume_app, name="volume")
# piped or logged output gets room for its tables (rich would assume 80 columns and cut the cells short)
_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 140
console = Console(soft_wrap=True, width=_WIDTH)
err_console = Console(stderr=True, soft_wrap=True, width=_WIDTH)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True,
    )


def _counts_table(title: str, counts: dict) -> Table:
    table = Table(title=title, show_header=True)
    table.add_column("value")
    table.add_column("cases", justify="right")
    for key, value in counts.items():
        table.add_row(str(key), str(value))
    return table


@app.command()
def version() -> None:
    """Print the osteolens version."""
    console.print(f"osteolens {__version__}")


@data_app.command("import-btxrd")
def import_btxrd_cmd(
    src: Path = typer.Argument(..., help="BTXRD folder with dataset.csv, images/ and masks/."),
    out: Path = typer.Option(..., "--out", help="Folder for manifest.csv and dataset.json."),
) -> None:
    """Turn BTXRD into a manifest with a patient-group id for every image."""
    from osteolens.data.importers import import_btxrd

    result = import_btxrd(src, out)
    for w in result.warnings:
        err_console.print(f"[yellow]warning:[/] {w}")
    _print_summary(result.manifest_path)


@data_app.command("import-folder")
def import_folder_cmd(
    images: Path = typer.Argument(..., help="Folder of images."),
    labels: Path = typer.Option(..., "--labels", help="CSV with an image column and label/clinical columns."),
    out: Path = typer.Option(..., "--out", help="Folder for manifest.csv and dataset.json."),
    masks: Optional[Path] = typer.Option(None, "--masks", help="Folder of masks named like the images."),
    image_column: str = typer.Option("image", help="CSV column with the image file name."),
    group_column: Optional[str] = typer.Option(None, help="CSV column with the patient id (default: patient_id or group_id)."),
) -> None:
    """Turn a folder of images plus a CSV of labels (and optional masks) into a manifest."""
    from osteolens.data.importers import import_folder

    result = import_folder(images, labels, out, masks=masks, image_column=image_column, group_column=group_column)
    for w in result.warnings:
        err_console.print(f"[yellow]warning:[/] {w}")
    _print_summary(result.manifest_path)


def _print_summary(manifest: Path) -> None:
    from osteolens.data.summary import summarize_manifest

    s = summarize_manifest(manifest)
    console.print(f"[bold]{manifest}[/]: {s['n_cases']} cases in {s['n_groups']} patient groups, {s['with_mask']} with a mask")
    for key in ("label", "subtype", "centre", "sex", "view"):
        if s[key]:
            console.print(_counts_table(key, s[key]))
    if s["age"]:
        console.print(f"age: {s['age']['min']:.0f}-{s['age']['max']:.0f} years, median {s['age']['median']:.0f}")


@data_app.command("summary")
def summary_cmd(manifest: Path = typer.Argument(..., help="Manifest CSV.")) -> None:
    """Print the counts of a manifest (labels, subtypes, centres, sex, views, age)."""
    _print_summary(manifest)


@data_app.command("verify")
def verify_cmd(
    manifest: Path = typer.Argument(..., help="Manifest CSV."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the full report as JSON."),
    near_duplicate_bits: int = typer.Option(2, help="Perceptual-hash distance (of 64 bits) for near-duplicates; -1 turns it off."),
    workers: int = typer.Option(4, help="Threads reading images."),
) -> None:
    """Read every case and report every problem; exit status 1 when any error is found."""
    from osteolens.data.manifest import load_manifest
    from osteolens.data.verify import verify_manifest

    m = load_manifest(manifest, strict=False)
    with _progress() as bar:
        task = bar.add_task("verifying", total=len(m))
        report = verify_manifest(m, workers=workers, near_duplicate_bits=near_duplicate_bits,
                                 progress=lambda done, total: bar.update(task, completed=done))
    for p in report.problems:
        colour = "red" if p.severity == "error" else "yellow"
        console.print(f"[{colour}]{p.severity}[/] {p.kind}: {p.path} (case {p.case_id}): {p.message}", highlight=False)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.counts().items())) or "none"
    verdict = "[green]OK[/]" if report.ok else f"[red]{len(report.errors)} error(s)[/]"
    console.print(f"{report.n_cases} cases read; problems: {counts}; {verdict}")
    raise typer.Exit(0 if report.ok else 1)


@data_app.command("split")
def split_cmd(
    manifest: Path = typer.Argument(..., help="Manifest CSV."),
    out: Path = typer.Option(..., "--out", help="Splits CSV to write."),
    seed: int = typer.Option(0, help="Random seed."),
    fractions: str = typer.Option("0.7,0.1,0.2", help="train,val,test fractions."),
    k_folds: Optional[int] = typer.Option(None, "--k-folds", help="Make k folds instead of train/val/test."),
    hold_out_centre: Optional[str] = typer.Option(None, "--hold-out-centre", help="Test on this centre (or comma-separated centres) only: external validation."),
    link_duplicates: bool = typer.Option(True, help="Merge the groups of identical / near-identical images first."),
) -> None:
    """Split by patient group, stratified by label; no group crosses splits."""
    from osteolens.data.splits import split_manifest

    try:
        fr = tuple(float(x) for x in fractions.split(","))
    except ValueError:
        raise typer.BadParameter(f"--fractions must be three numbers like 0.7,0.1,0.2, got {fractions!r}")
    if len(fr) != 3:
        raise typer.BadParameter(f"--fractions needs three numbers, got {len(fr)}")
    result = split_manifest(manifest, fractions=fr, seed=seed, k_folds=k_folds, hold_out_centre=hold_out_centre,
                            link_duplicates=link_duplicates)
    result.save(out)
    for note in result.notes:
        console.print(f"note: {note}")
    balance = result.balance()
    table = Table(title=f"class balance per {result.column} ({result.kind}, seed {seed})")
    table.add_column(result.column)
    for col in balance.columns:
        table.add_column(str(col), justify="right")
    for idx, row in balance.iterrows():
        table.add_row(str(idx), *[f"{v:g}" for v in row])
    console.print(table)
    console.print(f"wrote {out}; no patient group crosses {result.column}s")


@app.command()
def evaluate(
    predictions: Path = typer.Argument(..., help="Predictions CSV (case_id or image, p_normal, p_benign, p_malignant, ...)."),
    truth: Path = typer.Option(..., "--truth", help="Manifest with the true labels and masks."),
    out: Path = typer.Option(..., "--out", help="Folder for metrics.json, summary.md and plots."),
    splits: Optional[Path] = typer.Option(None, help="Splits CSV, to evaluate one split only."),
    split: Optional[str] = typer.Option(None, help="The split (e.g. test) or fold to evaluate."),
    n_boot: int = typer.Option(2000, help="Bootstrap resamples (over patient groups)."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    sensitivity: float = typer.Option(0.9, help="Report an operating point at this sensitivity too."),
) -> None:
    """Evaluate predictions: AUCs, operating points, calibration, segmentation, detection, strata, with 95% CIs."""
    from osteolens.evaluation.report import evaluate as run

    with err_console.status("evaluating"):
        run(predictions, truth, out, splits=splits, split=split, n_boot=n_boot, seed=seed, target_sensitivity=sensitivity)
    text = (out / "summary.md").read_text()
    console.print(text.split("## By ")[0], markup=False, highlight=False)
    console.print(f"wrote {out}/metrics.json, summary.md, per_case.csv and plots")


@app.command()
def compare(
    predictions_a: Path = typer.Argument(..., help="Model A's predictions CSV."),
    predictions_b: Path = typer.Argument(..., help="Model B's predictions CSV."),
    truth: Path = typer.Option(..., "--truth", help="Manifest."),
    task: str = typer.Option("malignant", help="malignant, tumour_vs_normal, benign or normal (one vs rest), or macro "
                                              "(their mean over normal, benign and malignant; bootstrap only)."),
    splits: Optional[Path] = typer.Option(None, help="Splits CSV."),
    split: Optional[str] = typer.Option(None, help="Split to compare on."),
    n_boot: int = typer.Option(2000, "--n-boot", help="Patient-group resamples for the paired bootstrap."),
) -> None:
    """Compare two models' AUCs on the same cases: DeLong's test and a paired patient-group bootstrap."""
    from osteolens.evaluation.compare import compare_models

    r = compare_models(predictions_a, predictions_b, truth, task, splits, split, n_boot=n_boot)
    b = r["bootstrap"]
    console.print(
        f"{r['task']} on {r['n']} cases ({r['n_groups']} patient groups): AUC A {r['auc_a']:.4f}, B {r['auc_b']:.4f}; "
        f"difference {r['difference']:+.4f}\n"
        + ("" if r["z"] is None else f"  DeLong (images independent): 95% CI {r['ci_low']:+.4f} to {r['ci_high']:+.4f}, "
                                     f"z {r['z']:.3f}, p {r['p_value']:.4g}\n")
        + f"  paired group bootstrap ({b['n_boot']} resamples): 95% CI {b['ci_low']:+.4f} to {b['ci_high']:+.4f}, "
        + (f"p < {1 / b['n_boot']:.2g}" if b["p_value"] == 0 else f"p {b['p_value']:.4g}")
    )
    console.print(json.dumps(r, indent=2), highlight=False)


#: the --model option of every command that analyses radiographs
MODEL_HELP = ("Registered model name or model folder (osteolens models lists them; osteolens-radiograph-int8 is "
              "faster on CPUs without AVX-512).")


@app.command()
def train(
    config: Path = typer.Argument(..., help="JSON training config (see configs/radiograph_default.json)."),
    out: Path = typer.Option(..., "--out", help="Run folder: config.json, metrics.csv, best.pt, calibration.json."),
) -> None:
    """Train the radiograph model on the CPU (validated config saved in the run folder)."""
    from osteolens.training.config import load_config
    from osteolens.training.trainer import train as run

    summary = run(load_config(config), out, show_progress=True)
    best = summary["best_val"] or {}
    console.print(f"best epoch {summary['best_epoch']} of {summary['epochs_run']} ({summary['stop_reason']}), "
                  f"{summary['train_minutes']} min; val macro AUC {best.get('val_macro_auc', float('nan')):.3f}, "
                  f"Dice {best.get('val_dice', float('nan')):.3f}; temperature {summary['calibration']['temperature']:.3f}")


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="A finished training run."),
    out: Path = typer.Option(..., "--out", help="Model folder to write (model.onnx + metadata.json)."),
    name: Optional[str] = typer.Option(None, help="Model name (default: the config's model_name)."),
    version: str = typer.Option("1.0.0", help="Model version."),
) -> None:
    """Export a run to ONNX (fp32) with its metadata; checks ONNX against PyTorch (1e-4)."""
    from osteolens.models.export import export_run

    meta = export_run(run_dir, out, name=name, version=version)
    worst = max(meta["export_check"]["max_abs_diff"].values())
    console.print(f"wrote {out}/model.onnx (sha256 {meta['sha256'][:16]}...) and metadata.json; ONNX vs PyTorch max |diff| {worst:.2e}")


@app.command("train-refiner")
def train_refiner_cmd(
    config: Path = typer.Argument(..., help="JSON refiner config (see configs/refiner_default.json)."),
    out: Path = typer.Option(..., "--out", help="Run folder: config.json, metrics.csv, best.pt, summary.json."),
) -> None:
    """Train the lesion refiner: a small U-Net that redraws a lesion from a zoomed-in view (CPU, about 40 min)."""
    from osteolens.training.config import load_config
    from osteolens.training.refiner import RefinerConfig, train_refiner

    summary = train_refiner(load_config(config, RefinerConfig), out, show_progress=True)
    console.print(f"best epoch {summary['best_epoch']} of {summary['epochs_run']} ({summary['stop_reason']}), "
                  f"{summary['train_minutes']} min; validation view Dice {summary['best_val_view_dice']:.3f} "
                  f"on {summary['n_val_views']} lesion views"
                  + (f", malignancy AUC {summary['best_val_view_malignancy_auc']:.3f}"
                     if "best_val_view_malignancy_auc" in summary else ""))


@app.command("attach-refiner")
def attach_refiner_cmd(
    model: str = typer.Argument(..., help="Registered name or folder of a radiograph model."),
    refiner: Path = typer.Option(..., "--refiner", help="A finished refiner run (osteolens train-refiner)."),
    out: Path = typer.Option(..., "--out", help="Model folder to write: a copy of MODEL with refiner.onnx."),
    version: Optional[str] = typer.Option(None, help="The copy's version (default: MODEL's)."),
) -> None:
    """Copy a model with a lesion refiner exported beside it (checked against PyTorch, 1e-4).

    Choose its second look on validation next: benchmarks/radiograph_postprocess.py --model OUT --refiner --write ...
    """
    from osteolens.models.refiner import attach_refiner

    meta = attach_refiner(model, refiner, out, version=version)
    r = meta["refiner"]
    console.print(f"wrote {out}/{r['file']} (sha256 {r['sha256'][:16]}..., {r['input_size']} px); ONNX vs PyTorch "
                  f"max |diff| {r['export_check']['max_abs_diff_probability']:.2e}")


@app.command("fit-lesion-malignancy")
def fit_lesion_malignancy_cmd(
    model: str = typer.Argument(..., help="Registered name or folder of a model whose refiner reads malignancy."),
    out: Path = typer.Option(..., "--out", help="Model folder to write: a copy of MODEL with the reading fitted."),
    manifest: Optional[Path] = typer.Option(None, help="The model's training manifest (default: from its metadata)."),
    splits: Optional[Path] = typer.Option(None, help="The split file it was trained with (default: from its metadata)."),
    version: Optional[str] = typer.Option(None, help="The copy's version (default: MODEL's)."),
) -> None:
    """Combine the refiner's reading of the top lesion (malignant or benign) with the whole image's, fitted on validation.

    The malignant and uncertainty thresholds are chosen again on the combined probabilities.
    """
    from osteolens.models.lesion_calibration import calibrate_lesion_malignancy

    meta = calibrate_lesion_malignancy(model, out, manifest=manifest, splits=splits, version=version,
                                       show_progress=True)
    lm = meta["calibration"]["lesion_malignancy"]
    console.print(f"wrote {out}/metadata.json; validation, whole image -> combined: "
                  + ", ".join(f"{k} {v['whole_image']:.3f} -> {v['combined']:.3f}" for k, v in lm["validation"].items()))


@app.command()
def quantize(
    model: str = typer.Argument(..., help="Registered name or folder of a float32 radiograph model."),
    out: Path = typer.Option(..., "--out", help="Model folder to write (model.onnx + metadata.json)."),
    manifest: Optional[Path] = typer.Option(None, help="The model's training manifest (default: from its metadata)."),
    splits: Optional[Path] = typer.Option(None, help="The split file it was trained with (default: from its metadata)."),
    images: int = typer.Option(200, help="Training-split images that set the int8 activation ranges."),
    name: Optional[str] = typer.Option(None, help="Name of the copy (default: <name>-int8)."),
) -> None:
    """Write an int8 copy of a model for CPUs without fast float32; recalibrated and checked on validation."""
    from osteolens.models.quantize import quantize_model

    meta = quantize_model(model, out, manifest=manifest, splits=splits, n_calibration=images, name=name)
    figures = meta["quantization"]["validation"]["figures"]
    console.print(f"wrote {out}/model.onnx ({meta['name']}, sha256 {meta['sha256'][:16]}...); validation float32 -> int8: "
                  + ", ".join(f"{k} {v['float32']:.3f} -> {v['int8']:.3f}" for k, v in figures.items()))


@app.command()
def ensemble(
    models: list[str] = typer.Argument(..., help="Two or more registered names or folders of float32 radiograph models "
                                                 "trained on the same split file; images are prepared as the first does."),
    out: Path = typer.Option(..., "--out", help="Model folder to write (model.onnx + metadata.json)."),
    name: Optional[str] = typer.Option(None, help="Name of the ensemble (default: <first name>-ensemble)."),
    version: Optional[str] = typer.Option(None, help="Its version (default: the first member's)."),
    manifest: Optional[Path] = typer.Option(None, help="The members' training manifest (default: from the first's metadata)."),
    splits: Optional[Path] = typer.Option(None, help="The split file they were trained with (default: from its metadata)."),
) -> None:
    """Average several models' networks in one ONNX file, calibrated on their validation split."""
    from osteolens.models.ensemble import ensemble_models, members_to_ensemble

    meta = ensemble_models(models, out, name=name, version=version, manifest=manifest, splits=splits)
    console.print(f"wrote {out}/model.onnx ({meta['name']} {meta['version']}, sha256 {meta['sha256'][:16]}...); "
                  f"validation, members -> ensemble: {members_to_ensemble(meta['ensemble']['validation']['figures'])}")


@app.command()
def recalibrate(
    model: str = typer.Argument(..., help="Registered name or folder of a radiograph model."),
    out: Path = typer.Option(..., "--out", help="Model folder to write (model.onnx + metadata.json)."),
    crop_border: Optional[float] = typer.Option(
        None, "--crop-border", min=0.0, max=0.99,
        help="Cut flat image borders (rows/columns spanning at most this much of the [0, 1] grey range) before the "
             "network reads the image. Default: as the source model does."),
    no_crop: bool = typer.Option(False, "--no-crop", help="Read whole images (no border crop)."),
    noisy_border: Optional[bool] = typer.Option(
        None, "--noisy-border/--flat-border-only",
        help="With a border crop, cut noisy borders too (an even border with noise, a ramp or burnt-in text, ending in "
             "a straight edge), or flat ones only. Default: as the source model does."),
    version: Optional[str] = typer.Option(None, help="Version of the copy (default: the source's)."),
    manifest: Optional[Path] = typer.Option(None, help="The model's training manifest (default: from its metadata)."),
    splits: Optional[Path] = typer.Option(None, help="The split file it was trained with (default: from its metadata)."),
    local: Optional[Path] = typer.Option(
        None, "--local", help="Fit on your own labelled images instead: a manifest from `osteolens data import-folder`."),
    local_splits: Optional[Path] = typer.Option(None, help="With --local: fit on one split of this split file only."),
    local_split: str = typer.Option("val", help="With --local-splits: the split to fit on."),
    target_sensitivity: Optional[float] = typer.Option(
        None, min=0.5, max=0.999, help="With --local: malignant sensitivity the threshold is set for (default: the model's)."),
    skip_overlap_check: bool = typer.Option(
        False, help="With --local: do not check the images against the model's training images (models without fingerprints)."),
) -> None:
    """Copy a model with its calibration fitted again, on its validation split or on your own labelled images (--local).

    On the validation split a new border crop may be chosen too (--crop-border)."""
    from osteolens.models.recalibrate import recalibrate_model, recalibrate_on_local_data

    if no_crop and crop_border is not None:
        raise OsteolensError("--crop-border and --no-crop contradict each other; give one")
    if local is None:
        if local_splits or target_sensitivity or skip_overlap_check:
            raise OsteolensError("--local-splits, --target-sensitivity and --skip-overlap-check go with --local")
        crop = {} if not no_crop and crop_border is None else {"crop_uniform_border": crop_border}  # {}: the source's
        if noisy_border is not None:
            crop["crop_noisy_border"] = noisy_border
        meta = recalibrate_model(model, out, version=version, manifest=manifest, splits=splits, **crop)
        figures, on = meta["recalibration"]["validation"]["figures"], "validation"
    else:
        if no_crop or crop_border is not None or noisy_border is not None or manifest or splits:
            raise OsteolensError("--local keeps the model's own preparation and needs no training data: "
                                 "leave out --crop-border, --no-crop, --noisy-border, --manifest and --splits")
        meta = recalibrate_on_local_data(model, out, local, local_splits, local_split, version, target_sensitivity,
                                         check_overlap=not skip_overlap_check)
        rec = meta["recalibration"]["local"]
        figures, t = rec["figures"], rec["malignant_threshold_stability"]["threshold"]
        on = f"{rec['n_images']} local images (the copy's figures on the images it was fitted on)"
        console.print(f"malignant threshold {t['value']:.4f}, 95% interval over patient resamples {t['ci_low']:.4f}-"
                      f"{t['ci_high']:.4f} ({rec['labels']['malignant']} malignant images: the wider, the more its "
                      "sensitivity on new images will vary)")
    console.print(f"wrote {out}/metadata.json ({meta['name']} {meta['version']}); {on}, source -> copy: "
                  + ", ".join(f"{k} {v['source']:.3f} -> {v['copy']:.3f}" for k, v in figures.items()))


@app.command()
def models() -> None:
    """List the models shipped with osteolens (checksums verified)."""
    from osteolens.models.registry import list_models, resolve_model

    for name in list_models():
        folder = resolve_model(name)
        meta = json.loads((folder / "metadata.json").read_text())
        kind = "int8" if "quantization" in meta else "float32"
        size_mb = (folder / "model.onnx").stat().st_size / 2**20
        console.print(f"{name} {meta['version']} ({kind}, {size_mb:.1f} MB): {folder} (verified)")


@app.command("model-card")
def model_card(
    model_dir: Path = typer.Argument(..., help="Exported model folder."),
    accuracy: list[Path] = typer.Option(..., "--accuracy", help="radiograph_accuracy_<tag>.json (repeatable)."),
    latency: list[Path] = typer.Option([], "--latency", help="radiograph_latency[_TAG].json (repeatable: one table a machine)."),
    note: list[str] = typer.Option([], "--note", help="An extra limitation line (repeatable)."),
    robustness: list[Path] = typer.Option([], "--robustness", help="radiograph_robustness_<tag>.json (repeatable: one table)."),
    studies: list[Path] = typer.Option([], "--studies", help="radiograph_studies_<tag>.json (repeatable: one table each)."),
) -> None:
    """Write MODEL_CARD.md for a model from its metadata and measured benchmark results."""
    from osteolens.reporting.model_card import write_model_card

    console.print(f"wrote {write_model_card(model_dir, accuracy, latency, note, robustness or None, studies)}")


@app.command()
def analyze(
    inputs: list[Path] = typer.Argument(..., help="Radiograph files or folders (DICOM, PNG, JPEG, TIFF, BMP)."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    model: str = typer.Option("osteolens-radiograph", help=MODEL_HELP),
    clinical: Optional[Path] = typer.Option(None, "--clinical", help="CSV with image, age, sex, site (and region, view, study); image is the file name, or its path where names repeat; images with one study are also read together."),
    dicom_out: bool = typer.Option(False, "--dicom-out", help="For DICOM inputs also write SEG, SR (TID 1500), a presentation state (GSPS) and an overlay secondary capture."),
) -> None:
    """Detect, segment and classify bone tumours; write predictions.csv, masks, overlays and report.html.

    Where images name their study, each study's views are also read together (studies.csv)."""
    from osteolens.inference.analyze import analyze as run

    notes: list[str] = []  # what the folders left out, clinical rows naming no input
    studies: list = []
    with _progress() as bar:
        task = bar.add_task("analysing", total=None)
        results = run(inputs, out, model=model, clinical_csv=clinical, dicom_out=dicom_out, notes=notes,
                      studies=studies, progress=lambda d, t: bar.update(task, completed=d, total=t))
    for line in notes:
        err_console.print(f"[yellow]note[/] {line}", highlight=False)
    failed = [r for r in results if r.status != "ok"]
    lines = [(r.image, f"  uncertainty {r.uncertainty:.2f}  boxes {len(r.boxes)}" if r.status == "ok" else "", r)
             for r in results]
    lines += [(f"study {s.title} ({len(s.images) + len(s.failed)} image(s))", "", s) for s in studies]
    for name, more, r in lines:  # each image, then each study's views read together
        if r.status == "ok":
            refer = " (refer to a specialist)" if r.label == "indeterminate" else ""
            console.print(f"{name}: {r.label}{refer}  p(N/B/M) {r.p_normal:.2f}/{r.p_benign:.2f}/{r.p_malignant:.2f}{more}",
                          highlight=False)
        else:
            err_console.print(f"[red]error[/] {name}: {r.error}", highlight=False)
    written = "predictions.csv, studies.csv" if studies else "predictions.csv"
    console.print(f"{len(results) - len(failed)} analysed, {len(failed)} failed; wrote {out}/{written} and report.html")
    console.print(RESEARCH_NOTICE)


@pathology_app.command("train")
def pathology_train(
    tiles: Path = typer.Argument(..., help="Folder with non_tumor/, viable/ and necrotic/ tiles."),
    out: Path = typer.Option(..., "--out", help="Classifier JSON to write (a .sha256 file is written beside it)."),
    crops: int = typer.Option(2, help="Squares per tile side (each resized to 256 px)."),
    stain_normalise: bool = typer.Option(False, help="Macenko-normalise each square first."),
) -> None:
    """Cross-validate (grouped by case and slide) and fit the tile classifier."""
    from osteolens.pathology.classifier import TileSettings, train_tile_model

    with err_console.status("extracting features and cross-validating"):
        r = train_tile_model(tiles, out, TileSettings(crops=crops, stain_normalise=stain_normalise))
    for cv in r["cv"]:
        a = cv["accuracy"]
        console.print(f"CV seed {cv['seed']}: accuracy {a['value']:.3f} (95% CI {a['ci_low']:.3f}-{a['ci_high']:.3f}), "
                      f"{cv['n_tiles']} tiles in {cv['n_groups']} case/slide groups; confusion {cv['confusion_matrix']['matrix']}")
    console.print(f"wrote {r['path']}")


@pathology_app.command("classify")
def pathology_classify(
    tiles: list[Path] = typer.Argument(..., help="Tile files or folders (RGB JPEG/PNG/TIFF)."),
    out: Path = typer.Option(..., "--out", help="CSV to write, one row per tile."),
    model: Optional[Path] = typer.Option(None, help="Tile classifier JSON (default: the shipped one)."),
) -> None:
    """Classify H&E tiles as non-tumour / viable / necrotic (background tiles are marked)."""
    import pandas as pd

    from osteolens.inference.batch_inputs import collect_inputs
    from osteolens.pathology.classifier import classify_tiles

    rows = classify_tiles(collect_inputs(tiles), model)
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out, index=False)
    counts = pd.Series([r["class"] or "error" for r in rows]).value_counts().to_dict()
    console.print(f"{len(rows)} tiles: {counts}; wrote {out}")
    console.print(RESEARCH_NOTICE)


@pathology_app.command("analyze")
def pathology_analyze(
    slide: Path = typer.Argument(..., help="Whole-slide image (OpenSlide formats) or a large RGB TIFF/PNG/JPEG."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    model: Optional[Path] = typer.Option(None, help="Tile classifier JSON (default: the shipped one)."),
    magnification: Optional[float] = typer.Option(None, help="Objective magnification of a plain image (default 10)."),
) -> None:
    """Tile a slide, classify tissue, and report the necrosis rate and response."""
    from osteolens.pathology.slide import analyze_slide

    with _progress() as bar:
        task = bar.add_task("tiles", total=None)
        r = analyze_slide(slide, out, model=model, magnification=magnification,
                          progress=lambda d, t: bar.update(task, completed=d, total=t))
    rate = "undefined" if r["necrosis_rate"] is None else f"{100 * r['necrosis_rate']:.1f}%"
    verdict = "" if r["responder"] is None else ("responder" if r["responder"] else "non-responder")
    console.print(f"{slide.name}: necrosis rate {rate} {verdict}; tiles {r['tile_counts']}; wrote {out}/result.json, report.html")
    console.print(RESEARCH_NOTICE)


def _print_score(result) -> None:
    parts = ", ".join(f"{k} {v}" for k, v in result.parts.items())
    console.print(f"{result.name} {result.total} ({parts}): {result.category}: {result.interpretation}")
    console.print(json.dumps(result.to_dict()), highlight=False)


@score_app.command("mirels")
def score_mirels(
    site: str = typer.Option(..., help="upper_limb, lower_limb or peritrochanteric."),
    pain: str = typer.Option(..., help="mild, moderate or functional."),
    lesion: str = typer.Option(..., help="blastic, mixed or lytic."),
    size: str = typer.Option(..., help="under_one_third, one_to_two_thirds or over_two_thirds of the bone's diameter."),
) -> None:
    """Mirels' score for the risk of pathological fracture (4-12) with its recommendation."""
    from osteolens.clinical.scores import mirels

    _print_score(mirels(site, pain, lesion, size))


@score_app.command("sins")
def score_sins(
    location: str = typer.Option(..., help="Spinal level (e.g. T12) or junctional / mobile / semi_rigid / rigid."),
    pain: str = typer.Option(..., help="mechanical, occasional_non_mechanical or pain_free."),
    lesion: str = typer.Option(..., help="lytic, mixed or blastic."),
    alignment: str = typer.Option(..., help="subluxation_translation, de_novo_deformity or normal."),
    collapse: str = typer.Option(..., help="over_50_percent, under_50_percent, none_over_50_percent_body_involved or none."),
    posterolateral: str = typer.Option(..., help="bilateral, unilateral or none."),
) -> None:
    """Spinal Instability Neoplastic Score (0-18): stable / indeterminate / unstable."""
    from osteolens.clinical.scores import sins

    _print_score(sins(location, pain, lesion, alignment, collapse, posterolateral))


@radiomics_app.command("extract")
def radiomics_extract(
    out: Path = typer.Option(..., "--out", help="features.csv to write (its settings go to features.settings.json)."),
    image: Optional[Path] = typer.Option(None, "--image", help="Image: 2-D radiograph, NIfTI/NRRD file or DICOM series folder."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="Mask: 2-D mask image, NIfTI/NRRD file or RTSTRUCT."),
    roi: Optional[str] = typer.Option(None, "--roi", help="RTSTRUCT ROI name (when the structure set holds several)."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="Instead of --image/--mask: every case of a manifest with a mask."),
    labels: Optional[str] = typer.Option(None, "--labels", help="With --manifest: only these labels, comma-separated (e.g. benign,malignant)."),
    config: Optional[str] = typer.Option(None, "--config", help="Settings JSON or a preset: " + ", ".join(
        ["radiograph", "ct", "mr", "pet", "ibsi-A", "ibsi-B", "ibsi-C", "ibsi-D", "ibsi-E", "ibsi-digital-phantom"])),
    workers: int = typer.Option(1, "--workers", help="Processes for --manifest."),
) -> None:
    """Compute IBSI features (names and codes of the IBSI reference manual) for one lesion or a manifest."""
    from osteolens.radiomics.batch import extract_case_to_csv, extract_manifest_to_csv, settings_path
    from osteolens.radiomics.settings import load_settings

    if manifest is not None:
        settings = load_settings(config)
        with _progress() as bar:
            task = bar.add_task("radiomics", total=None)
            table = extract_manifest_to_csv(manifest, out, settings, workers, labels.split(",") if labels else None,
                                            progress=lambda k, n: bar.update(task, completed=k, total=n))
        failed = table[table.status != "ok"]
        for r in failed.itertuples():
            err_console.print(f"[red]error[/] {r.case_id}: {r.error}", highlight=False)
        console.print(f"{len(table) - len(failed)} cases, {len(failed)} failed; wrote {out} and {settings_path(out)}")
        return
    if image is None or mask is None:
        raise OsteolensError("give --image and --mask, or --manifest")
    table = extract_case_to_csv(image, mask, out, load_settings(config) if config else None, roi)
    missing = table[table.missing_reason != ""]
    console.print(f"{len(table)} feature values ({len(missing)} not defined for this ROI, with reasons); "
                  f"wrote {out} and {settings_path(out)}")
    console.print(RESEARCH_NOTICE)


def _named_paths(values: list[str], option: str) -> dict[str, str]:
    out = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise OsteolensError(f"{option} {v!r}: expected NAME=PATH, e.g. CT=STS_001/CT/image")
        out[name] = path
    return out


@volume_app.command("report")
def volume_report_cmd(
    image: list[str] = typer.Option(..., "--image", help="NAME=PATH of a DICOM series folder or NIfTI file; repeat per series."),
    mask: list[str] = typer.Option(..., "--mask", help="NAME=PATH of the lesion: RTSTRUCT or NIfTI mask; one per --image."),
    out: Path = typer.Option(..., "--out", help="Folder for report.json, report.md, report.html and slice pictures."),
    reference: Optional[str] = typer.Option(None, "--reference", help="Series whose grid the others go to (default: CT)."),
    roi: Optional[str] = typer.Option(None, "--roi", help="RTSTRUCT ROI name, when a structure set holds several."),
    register: bool = typer.Option(False, "--register", help="Rigid mutual-information registration (different sessions)."),
) -> None:
    """Lesion volume (mL), diameters, PET SUVmax/mean/peak and MTV, and all series on one grid with contours."""
    from osteolens.volumes.report import volume_report

    images, masks = _named_paths(image, "--image"), _named_paths(mask, "--mask")
    if set(images) != set(masks):
        raise OsteolensError(f"every --image needs a --mask with the same name: images {sorted(images)}, masks {sorted(masks)}")
    report = volume_report({n: (images[n], masks[n]) for n in images}, out, reference, roi, register)
    table = Table(title=f"lesion on {len(report['series'])} series (reference grid: {report['reference_series']})")
    for col in ("series", "volume mL", "max diameter mm", "long/short axis mm", "SUVmax/peak", "Dice vs reference"):
        table.add_column(col)
    for name, e in report["series"].items():
        m = e["measurements"]
        suv = f"{m['suv_max']:.2f}/{m['suv_peak']:.2f}" if "suv_max" in m else ""
        table.add_row(name, f"{m['volume_ml']:.1f}", f"{m['max_3d_diameter_mm']:.1f}",
                      f"{m['long_axis_mm']:.1f}/{m['short_axis_mm']:.1f}", suv, f"{e['agreement_with_reference']['dice']:.3f}")
    console.print(table)
    console.print(f"wrote {out}/report.json, report.md, report.html")
    console.print(RESEARCH_NOTICE)


@app.command()
def serve(
    port: int = typer.Option(8000, help="TCP port."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    model: str = typer.Option("osteolens-radiograph", help=MODEL_HELP),
    keys_file: Optional[Path] = typer.Option(None, help="File with API keys, one per line (also: OSTEOLENS_API_KEYS)."),
    max_upload_mb: float = typer.Option(50.0, help="Upload size limit in MB (413 beyond)."),
    storage: Optional[Path] = typer.Option(None, help="Folder for analyses (default: a temporary folder)."),
    concurrent_analyses: Optional[int] = typer.Option(None, help="Analyses run at once, the rest queue (default: one per CPU core)."),
    keep_hours: float = typer.Option(24.0, help="Delete analyses, and the uploads they hold, this many hours after they "
                                                "are made (0: keep them until a client deletes them)."),
) -> None:
    """Run the HTTP API (API keys required; /healthz open; OpenAPI docs at /docs)."""
    import uvicorn

    from osteolens.service.app import create_app, load_api_keys

    app_ = create_app(model, load_api_keys(keys_file), max_upload_mb, storage, concurrent_analyses, keep_hours)
    console.print(f"osteolens API on http://{host}:{port} (docs at /docs). {RESEARCH_NOTICE}")
    uvicorn.run(app_, host=host, port=port, log_level="info")


@dicom_app.command("from-image")
def dicom_from_image(
    image: Path = typer.Argument(..., help="PNG, JPEG or TIFF radiograph."),
    out: Path = typer.Option(..., "--out", help="DICOM file to write."),
    patient_id: Optional[str] = typer.Option(None, help="Patient ID (default: generated)."),
    patient_name: Optional[str] = typer.Option(None, help="Patient name, DICOM style Family^Given (default: Anonymous)."),
    patient_sex: str = typer.Option("", help="M, F, O or empty."),
    patient_age: str = typer.Option("", help="Patient's Age: years (48) or DICOM style (048Y, 006M); analysis reads it."),
    study_uid: Optional[str] = typer.Option(None, help="Add to this study (default: a new study)."),
    body_part: str = typer.Option("", help="Body Part Examined, e.g. KNEE (analysis reads its region)."),
    view_position: str = typer.Option("", help="View Position, e.g. AP or LAT (analysis reads the view)."),
    laterality: str = typer.Option("", help="L or R: the side (a study reads its views of one body part and side together)."),
    pixel_spacing_mm: Optional[float] = typer.Option(None, help="Imager pixel spacing in mm, when known."),
) -> None:
    """Wrap a plain image as a DICOM CR radiograph so that it can enter the DICOM path."""
    from osteolens.io.dicom_write import image_to_dicom

    path = image_to_dicom(image, out, patient_id=patient_id, patient_name=patient_name, patient_sex=patient_sex,
                          patient_age=patient_age, study_uid=study_uid, body_part=body_part, view_position=view_position, laterality=laterality,
                          pixel_spacing_mm=pixel_spacing_mm)
    console.print(f"wrote {path}")


@pacs_app.command("analyze")
def pacs_analyze(
    study: str = typer.Option(..., "--study", help="Study Instance UID."),
    url: str = typer.Option("http://127.0.0.1:8042", help="Orthanc base URL (DICOMweb under /dicom-web)."),
    work: Optional[Path] = typer.Option(None, help="Working folder (default: temporary)."),
    model: str = typer.Option("osteolens-radiograph", help=MODEL_HELP),
) -> None:
    """Pull a study's radiographs, analyse them, push SEG, SR and overlay back into the study."""
    from osteolens.inference.study import side_and_part
    from osteolens.interop.pacs import analyze_study

    r = analyze_study(url, study, work, model)
    console.print(f"study {study}: {len(r['analysed'])} radiograph(s) analysed ({', '.join(r['labels']) or 'none'}), "
                  f"{len(r['stored'])} object(s) stored")
    for s in r["study_readings"]:  # one per body part and side
        if s["status"] == "ok":
            where = side_and_part(s["laterality"], s["body_part"])
            console.print(f"views read together{' (' + where + ')' if where else ''}: {s['label']}  p(N/B/M) "
                          f"{s['p_normal']:.2f}/{s['p_benign']:.2f}/{s['p_malignant']:.2f}", highlight=False)


@pacs_app.command("watch")
def pacs_watch(
    url: str = typer.Option("http://127.0.0.1:8042", help="Orthanc base URL."),
    state: Path = typer.Option(Path("osteolens-watch.json"), help="State file (survives restarts)."),
    work: Path = typer.Option(Path("osteolens-watch"), help="Working folder."),
    model: str = typer.Option("osteolens-radiograph", help=MODEL_HELP),
    once: bool = typer.Option(False, help="Process what is pending, then exit."),
    retries: int = typer.Option(3, help="Attempts per study before it is recorded as failed."),
) -> None:
    """Follow Orthanc's change feed; analyse each new stable radiograph study once."""
    import logging

    from osteolens.interop.pacs import watch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    s = watch(url, state, work, model, once=once, retries=retries)
    console.print(f"{len(s.done)} studies done, {len(s.failed)} failed; last change {s.last_change}")


@app.command()
def demo(out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for the demo's outputs.")) -> None:
    """Run the main job on the bundled sample radiographs."""
    from osteolens.demo import run_demo

    summary = run_demo(out, console=console)
    console.print(f"[bold green]demo done[/]: outputs in {summary['out']}")
    console.print(RESEARCH_NOTICE)


def main() -> None:
    """Entry point: run the app and turn osteolens errors, and files or folders that cannot be
    read or written (an output folder that is a file, no permission, a full disk), into a red
    line and exit status 2."""
    try:
        app()
    except OsteolensError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except OSError as exc:
        if exc.filename is None:  # not about a path the user gave: a bug, keep its traceback
            raise
        where = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 else "")
        err_console.print(f"[bold red]error:[/] {where}: {exc.strerror or exc}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
