"""An int8 copy of an exported radiograph model for CPUs without fast float32 (AVX2 only), recalibrated.

Post-training static quantization with ONNX Runtime: weights int8 per output channel, activations
uint8 with ranges measured on training-split images (never validation or test), in QDQ form.
The network's high-resolution early layers (stem and blocks 0-3, whose features feed the mask
decoder's finest skips) stay float32: quantizing them cost about 0.04 validation Dice on
osteolens-radiograph 1.5.1 and no speed (``docs/radiograph_model.md``).

Quantization moves the logits, so the copy is calibrated again on the source model's validation
split (temperature, malignant and uncertainty thresholds: the same code as training,
:func:`osteolens.training.trainer.calibration_from_predictions`, on images prepared as the source prepares
them), and both models are scored on
those images. The copy is refused when it loses more than ``max_auc_drop`` of any AUC or
``max_dice_drop`` of Dice there. Mask post-processing is kept from the source; re-choose it with
``benchmarks/radiograph_postprocess.py --write``.

Example:
    >>> from osteolens.models.quantize import quantize_model
    >>> meta = quantize_model("osteolens-radiograph", "work/models/int8")   # doctest: +SKIP
    >>> meta["quantization"]["validation"]["val_macro_auc"]                 # doctest: +SKIP
    {'float32': 0.909, 'int8': 0.909, 'change': 0.0}
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from osteolens import __version__
from osteolens.checksums import sha256_file
from osteolens.errors import OsteolensError
from osteolens.models.registry import copy_refiner, load_model
from osteolens.models.recalibrate import COMPARED, KEPT, flip_batches, predict_onnx, training_data

#: node-name parts of the layers kept in float32 (see the module docstring)
KEEP_FLOAT = ("/encoder/stem", "/encoder/blocks.0/", "/encoder/blocks.1/", "/encoder/blocks.2/", "/encoder/blocks.3/")


class _CalibrationReader:
    """Feeds ONNX Runtime's calibrator flip-TTA batches of training images (what inference runs), one at a time."""

    def __init__(self, images_u8: np.ndarray, clinical: np.ndarray | None, batch_size: int = 8):
        self._batches = flip_batches(images_u8, clinical, batch_size)

    def get_next(self):
        batch = next(self._batches, None)
        if batch is None:
            return None
        _, images, c = batch
        return {"image": images, **({"clinical": c} if c is not None else {})}


def quantize_model(model: str | Path, out_dir: str | Path, manifest: str | Path | None = None,
                   splits: str | Path | None = None, n_calibration: int = 200, name: str | None = None,
                   seed: int = 0, max_auc_drop: float = 0.02, max_dice_drop: float = 0.03) -> dict:
    """Write an int8 copy of ``model`` into ``out_dir``, calibrated and checked on its validation split.

    Args:
        model: registered name or folder of an exported float32 radiograph model.
        out_dir: the model folder to write (``model.onnx``, ``metadata.json``).
        manifest, splits: the model's training data (default: the paths in its metadata; the split
            file must be the one it was trained with).
        n_calibration: training-split images whose activations set the int8 ranges.
        name: the copy's name (default ``<source name>-int8``).
        seed: picks the calibration images.
        max_auc_drop, max_dice_drop: the largest validation loss accepted.

    Returns:
        The copy's metadata.

    Raises:
        OsteolensError: missing or different training data, or the copy loses too much accuracy.
    """
    import onnx
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from osteolens.training.trainer import calibration_from_predictions, split_indices

    source = load_model(model)
    meta = json.loads(json.dumps(source.metadata))
    if "quantization" in meta:
        raise OsteolensError(f"{source.folder}: already quantized; quantize the float32 model")
    cfg, data = training_data(meta, manifest, splits)
    train_idx, val_idx = split_indices(cfg, data.case_ids)
    rng = np.random.default_rng(seed)
    calib_idx = np.sort(rng.choice(train_idx, min(n_calibration, len(train_idx)), replace=False))
    clinical = data.clinical if source.uses_clinical else None

    out_dir = Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "model.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source.folder / "model.onnx"), str(prepared))
        nodes = [n.name for n in onnx.load(str(prepared)).graph.node]
        keep = [n for n in nodes if any(part in n for part in KEEP_FLOAT)]
        reader = _CalibrationReader(data.images[calib_idx], None if clinical is None else clinical[calib_idx])
        quantize_static(str(prepared), str(onnx_path), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=keep,
                        calibrate_method=CalibrationMethod.MinMax, extra_options={"CalibMovingAverage": True})

    val_clin = None if clinical is None else clinical[val_idx]
    labels, masks = data.labels[val_idx], data.masks[val_idx]
    cal_float = calibration_from_predictions(predict_onnx(source, data.images[val_idx], val_clin), labels, masks, cfg)
    copy_refiner(source.folder, meta, out_dir)  # the lesion refiner stays float32 (a small share of the time)
    meta["sha256"] = sha256_file(onnx_path)  # provisional metadata, so that the copy loads for scoring
    (out_dir / "metadata.json").write_text(json.dumps(meta))
    quantized = load_model(out_dir)
    pred_q = predict_onnx(quantized, data.images[val_idx], val_clin)
    cal_q = calibration_from_predictions(pred_q, labels, masks, cfg)
    compared = {k: {"float32": round(cal_float[k], 4), "int8": round(cal_q[k], 4), "change": round(cal_q[k] - cal_float[k], 4)}
                for k in COMPARED}
    losses = {k: -v["change"] for k, v in compared.items() if k.startswith("val_")}
    too_much = {k: d for k, d in losses.items() if d > (max_dice_drop if k == "val_dice" else max_auc_drop)}
    if too_much:  # remove what this call wrote, nothing else
        for written in (onnx_path, out_dir / "metadata.json"):
            written.unlink(missing_ok=True)
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise OsteolensError(f"int8 copy of {meta['name']} {meta['version']} refused: on {len(val_idx)} validation images it "
                             f"loses {', '.join(f'{k} {d:.3f}' for k, d in too_much.items())} (allowed: AUC "
                             f"{max_auc_drop}, Dice {max_dice_drop})")

    kept_from_source = {k: meta["calibration"][k] for k in KEPT if k in meta["calibration"]}
    source_info = {"name": meta["name"], "version": meta["version"], "sha256": source.metadata["sha256"]}
    meta.update({
        "name": name or f"{meta['name']}-int8",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "calibration": {**cal_q, **kept_from_source},
        "quantization": {
            "method": "ONNX Runtime static quantization, QDQ: int8 weights per output channel, uint8 activations "
                      "(MinMax ranges, moving average)",
            "source_model": source_info,
            "float32_layers": sorted(KEEP_FLOAT),
            "calibration_images": {"split": "train", "n": int(len(calib_idx)), "seed": seed, "flip_tta": True},
            "validation": {"n_images": int(len(val_idx)), "figures": compared,
                           "note": "both models calibrated on these images; Dice at each one's best mask threshold, "
                                   "before post-processing"},
        },
        "software": {**meta.get("software", {}), "osteolens": __version__,
                     "onnxruntime": onnxruntime.__version__},
        "sha256": sha256_file(onnx_path),
    })
    meta.pop("export_check", None)  # it compared the float32 ONNX with PyTorch
    meta["changes"] = meta.get("changes", []) + [
        f"{meta['version']} int8: {meta['name']}, the int8 copy of {source_info['name']} {source_info['version']}; on the "
        f"validation split, each calibrated there: " + ", ".join(f"{k} {v['float32']:.3f} -> {v['int8']:.3f}" for k, v in compared.items())]
    (out_dir / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta
