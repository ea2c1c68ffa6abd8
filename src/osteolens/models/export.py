"""Export a training run to a self-describing model folder: ``model.onnx`` + ``metadata.json``.

The metadata carries everything inference needs and everything a reader should know: label
maps, preprocessing, clinical inputs, calibration and thresholds, training data, validation
figures, the sha256 of the ONNX file and the software versions. The export is checked: the ONNX
outputs on real validation images must match PyTorch's within ``1e-4``.
"""

from __future__ import annotations

import json
import platform
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from osteolens import RESEARCH_NOTICE, __version__
from osteolens.checksums import sha256_file
from osteolens.data.clinical import CLINICAL_FEATURES, N_CLINICAL
from osteolens.data.fingerprints import training_fingerprints
from osteolens.data.manifest import LABELS
from osteolens.errors import OsteolensError
from osteolens.training.cache import SUBTYPE_NAMES
from osteolens.training.config import TrainConfig
from osteolens.transforms.preprocess import IMAGENET_MEAN, IMAGENET_STD, crop_preprocessing, enlarged_size

OUTPUTS = ("class_logits", "subtype_logits", "mask_logits", "cam")
BTXRD_TRAINING_DATA = {
    "name": "BTXRD (256x256 copy)",
    "licence": "CC BY-NC-ND 4.0: research and non-commercial use only",
    "citation": "Yao S. et al., Scientific Data 12, 88 (2025), doi:10.1038/s41597-024-04311-y",
}


class _Exportable(torch.nn.Module):
    """The network with a tuple output, in the order of :data:`OUTPUTS`."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, image, clinical=None):
        out = self.net(image, clinical)
        return tuple(out[k] for k in OUTPUTS)


def _as_probability(name: str, x: np.ndarray) -> np.ndarray:
    """The probabilities a user sees from a raw output (softmax over classes, sigmoid for the mask)."""
    if name == "mask_logits":
        return 1 / (1 + np.exp(-x))
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _compare(wrapper, session, x: torch.Tensor, clin: torch.Tensor | None) -> tuple[dict, dict, tuple]:
    """Raw and user-facing differences between PyTorch and ONNX Runtime on one batch.

    What users receive must agree within 1e-4: class and subtype probabilities, mask
    probabilities, and the CAM relative to its own maximum (it reaches users as a saliency map
    scaled that way; element-wise tolerances fail near zero crossings of a sum of 1,280 float32
    products).
    """
    feeds = {"image": x.numpy(), **({"clinical": clin.numpy()} if clin is not None else {})}
    with torch.no_grad():
        ref = wrapper(x, clin)
    got = session.run(list(OUTPUTS), feeds)
    max_diff = {k: float(np.abs(r.numpy() - g).max()) for k, r, g in zip(OUTPUTS, ref, got)}
    prob_diff = {k: float(np.abs(_as_probability(k, r.numpy()) - _as_probability(k, g)).max())
                 for k, r, g in zip(OUTPUTS, ref, got) if k != "cam"}
    cam_ref, cam_got = ref[OUTPUTS.index("cam")].numpy(), got[OUTPUTS.index("cam")]
    cam_scale = np.maximum(np.abs(cam_ref).max(axis=(-2, -1), keepdims=True), 1.0)
    prob_diff["cam_relative_to_map_max"] = float((np.abs(cam_got - cam_ref) / cam_scale).max())
    return max_diff, prob_diff, ref


def onnx_export(net: torch.nn.Module, example: tuple, path: Path, input_names: list[str], output_names: list[str],
                dynamic_axes: dict) -> None:
    """Export ``net`` to ONNX (opset 17, TorchScript exporter, constants folded) without its known warnings, and check the file."""
    import onnx

    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
        torch.onnx.export(net, example, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=17, dynamo=False, do_constant_folding=True)
    onnx.checker.check_model(str(path))


def load_run(run_dir: str | Path):
    """The config, calibration, summary and best network of a run folder."""
    from osteolens.training.trainer import build_model

    run_dir = Path(run_dir)
    for name in ("config.json", "best.pt", "calibration.json", "summary.json"):
        if not (run_dir / name).is_file():
            raise OsteolensError(f"{run_dir / name}: missing; is {run_dir} a finished training run?")
    cfg = TrainConfig(**json.loads((run_dir / "config.json").read_text()))
    net = build_model(cfg.model_copy(update={"pretrained": False}))
    net.load_state_dict(torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True))
    net.eval()
    return cfg, json.loads((run_dir / "calibration.json").read_text()), json.loads((run_dir / "summary.json").read_text()), net


def export_run(run_dir: str | Path, out_dir: str | Path, name: str | None = None, version: str = "1.0.0",
               check_images: int = 8) -> dict:
    """Export a run to ONNX (fp32) + metadata and check ONNX against PyTorch.

    Args:
        run_dir: a finished training run.
        out_dir: the model folder to write.
        name: model name (default: the config's ``model_name``).
        version: model version.
        check_images: number of real validation images used to compare ONNX and PyTorch.

    Returns:
        The metadata dict.

    Raises:
        OsteolensError: the run is incomplete, or ONNX and PyTorch disagree by more than 1e-4.
    """
    import onnx
    import onnxruntime as ort

    cfg, calibration, summary, net = load_run(run_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "model.onnx"
    size = cfg.image_size
    n_clin = N_CLINICAL if cfg.clinical else 0
    net = net.to(memory_format=torch.contiguous_format)
    wrapper = _Exportable(net).eval()
    example = (torch.zeros(1, 3, size, size),) + ((torch.zeros(1, n_clin),) if n_clin else ())
    input_names = ["image"] + (["clinical"] if n_clin else [])
    # Batch and spatial size are free: a model trained at S also runs at other multiples of 32
    # (the mask may be read from an enlarged view, ``calibration.mask_input_size``).
    spatial = {0: "batch", 2: "height", 3: "width"}
    dynamic = {"image": spatial, **({"clinical": {0: "batch"}} if n_clin else {}), "class_logits": {0: "batch"},
               "subtype_logits": {0: "batch"}, "mask_logits": spatial,
               "cam": {0: "batch", 2: "cam_height", 3: "cam_width"}}
    onnx_export(wrapper, example, onnx_path, input_names, list(OUTPUTS), dynamic)

    # equivalence on real validation images
    from osteolens.training.trainer import split_indices, to_input

    data = cfg.cached()
    train_idx, val_idx = split_indices(cfg, data.case_ids)
    idx = val_idx[:check_images]
    x = to_input(torch.from_numpy(data.images[idx]).float().div(255).unsqueeze(1)).contiguous()
    clin = torch.from_numpy(data.clinical[idx]) if n_clin else None
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    max_diff, prob_diff, ref = _compare(wrapper, session, x, clin)
    # the same images enlarged by a quarter: the free spatial axes must give PyTorch's answer too
    big = enlarged_size(size)
    x_big = torch.nn.functional.interpolate(x, size=(big, big), mode="bilinear", align_corners=False)
    _, prob_diff_big, _ = _compare(wrapper, session, x_big, clin)
    prob_diff.update({f"{k}_at_{big}px": v for k, v in prob_diff_big.items()})
    if max(prob_diff.values()) > 1e-4:
        onnx_path.unlink(missing_ok=True)
        raise OsteolensError(f"ONNX export of {run_dir} differs from PyTorch beyond 1e-4: probabilities {prob_diff}, raw {max_diff}")

    metadata = {
        "name": name or cfg.model_name,
        "version": version,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "notice": RESEARCH_NOTICE,
        "task": "bone-tumour radiograph analysis: normal/benign/malignant, subtype, tumour mask, saliency",
        "labels": list(LABELS),
        "subtypes": list(SUBTYPE_NAMES),
        "inputs": {
            "image": {"shape": ["batch", 3, size, size], "dtype": "float32",
                      "note": "height and width may be any multiple of 32; the model was trained at image_size"},
            **({"clinical": {"shape": ["batch", n_clin], "dtype": "float32", "features": list(CLINICAL_FEATURES)}} if n_clin else {}),
        },
        "outputs": list(OUTPUTS),
        "preprocessing": {
            "image_size": size,
            "grey": "to [0, 1] (DICOM: modality + VOI LUT, MONOCHROME1 inverted; colour: BT.601 luma)",
            "channels": "grey replicated to 3",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            **crop_preprocessing(cfg.crop_uniform_border, cfg.crop_noisy_border),
        },
        "clinical": {"used": bool(n_clin), "features": list(CLINICAL_FEATURES) if n_clin else [],
                     "note": "anatomical site is not used: in BTXRD it is annotated only for tumour images"},
        "calibration": calibration,
        "tta": "mean of class/subtype logits and of mask probabilities over the image and its horizontal flip",
        "training": {
            "data": BTXRD_TRAINING_DATA,
            "manifest": str(cfg.manifest),
            "splits": str(cfg.splits),
            "splits_sha256": sha256_file(cfg.splits),
            "n_train": summary["n_train"],
            "n_val": summary["n_val"],
            "best_epoch": summary["best_epoch"],
            "epochs_run": summary["epochs_run"],
            "train_minutes": summary["train_minutes"],
            "stop_reason": summary["stop_reason"],
            "config": json.loads(cfg.model_dump_json()),
            "image_fingerprints": training_fingerprints(cfg.manifest, data.case_ids[train_idx]),
        },
        "validation": summary.get("best_val"),
        "export_check": {"images": int(len(idx)), "max_abs_diff": max_diff, "max_abs_diff_probabilities": prob_diff,
                         "max_abs_reference": {k: float(np.abs(r.numpy()).max()) for k, r in zip(OUTPUTS, ref)},
                         "tolerance": "class, subtype and mask probabilities within 1e-4; CAM within 1e-4 + 1e-4 * |value|"},
        "software": {
            "osteolens": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": ort.__version__, "python": platform.python_version(),
        },
        "onnx_file": "model.onnx",
        "sha256": sha256_file(onnx_path),
    }
    (out_dir / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata
