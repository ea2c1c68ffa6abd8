"""The lesion refiner: a small U-Net that redraws a lesion from a zoomed-in view of it.

The whole-image network sees a small lesion as one or two cells of its 10 x 10 encoder grid and
draws it coarsely. The refiner reads only a view framed around one lesion (the lesion's longer
side a third or so of the view, :func:`~osteolens.transforms.views.zoom_view`), enlarged to its
own input size, and returns the tumour-mask logits of that view. It is trained on such views
alone (:mod:`osteolens.training.refiner`), so it cannot cost the whole-image network's
classification anything: the zoomed views that taught the shared network to draw lesions better
taught it to classify them worse (``docs/radiograph_model.md``, "Experiments not adopted").

A model folder carries its refiner as ``refiner.onnx``; ``metadata.json`` records it under
``refiner`` (input size, training, export check, sha256), and the analysis uses it through
``calibration.second_look`` with ``"network": "refiner"`` (:mod:`osteolens.inference.second_look`),
chosen on the validation split by ``benchmarks/radiograph_postprocess.py --refiner``.

Example:
    >>> import torch
    >>> net = LesionRefiner(pretrained=False).eval()
    >>> tuple(net(torch.zeros(2, 3, 160, 160)).shape)
    (2, 1, 160, 160)
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from osteolens import __version__
from osteolens.checksums import sha256_file
from osteolens.errors import OsteolensError
from osteolens.models.backbone import ENCODER_CHANNELS, LiteEncoder
from osteolens.models.multitask import UNetDecoder
from osteolens.models.registry import REFINER_FILE, resolve_model

#: largest change in mask probability that storing the refiner's weights as float16 may make
FLOAT16_TOLERANCE = 1e-2


class LesionRefiner(nn.Module):
    """EfficientNet-Lite0 encoder and the U-Net decoder of :class:`~osteolens.models.multitask.RadiographNet`.

    Args:
        image_size: square input size (a multiple of 32).
        pretrained: start the encoder from the packaged ImageNet weights.
        malignancy_head: add a linear head on the globally averaged deepest features that reads
            the view's lesion as malignant or benign (one logit); ``forward`` then returns the
            pair ``(mask_logits, malignancy_logit)``.
    """

    def __init__(self, image_size: int = 160, pretrained: bool = True, malignancy_head: bool = False):
        super().__init__()
        self.image_size = image_size
        self.encoder = LiteEncoder(image_size, pretrained=pretrained)
        self.decoder = UNetDecoder()
        self.malignancy = nn.Sequential(nn.Dropout(0.2), nn.Linear(ENCODER_CHANNELS[-1], 1)) if malignancy_head else None

    def forward(self, x: torch.Tensor):
        """``(B, 3, S, S)`` ImageNet-normalised views -> ``(B, 1, S, S)`` tumour-mask logits (and ``(B,)`` malignancy logits)."""
        feats = self.encoder(x)
        mask = self.decoder(feats)
        if self.malignancy is None:
            return mask
        return mask, self.malignancy(feats[-1].mean((2, 3)))[:, 0]


def refiner_outputs(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A refiner's mask logits and malignancy logits (None without the head)."""
    out = net(x)
    return out if isinstance(out, tuple) else (out, None)


def load_refiner_run(run_dir: str | Path):
    """The config, summary and best network of a refiner run folder."""
    from osteolens.training.refiner import RefinerConfig

    run_dir = Path(run_dir)
    for name in ("config.json", "best.pt", "summary.json"):
        if not (run_dir / name).is_file():
            raise OsteolensError(f"{run_dir / name}: missing; is {run_dir} a finished refiner run (osteolens train-refiner)?")
    cfg = RefinerConfig(**json.loads((run_dir / "config.json").read_text()))
    net = LesionRefiner(cfg.input_size, pretrained=False, malignancy_head=cfg.malignancy_weight > 0)
    net.load_state_dict(torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True))
    return cfg, json.loads((run_dir / "summary.json").read_text()), net.eval()


def store_float16(onnx_path: str | Path, min_elements: int = 1024) -> int:
    """Store an ONNX file's large float32 weights as float16, each cast back to float32 in the graph.

    The file halves; the arithmetic stays float32 (ONNX Runtime folds the casts when it loads the
    model), and each weight moves by at most its float16 rounding (a relative 2^-11). Returns the
    number of weights stored as float16.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    kept, casts = [], []
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT and int(np.prod(init.dims)) >= min_elements:
            half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), f"{init.name}__float16")
            kept.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT, name=f"{init.name}__cast"))
        else:
            kept.append(init)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(onnx_path))
    return len(casts)


def attach_refiner(model_dir: str | Path, run_dir: str | Path, out_dir: str | Path, check_views: int = 16,
                   float16_weights: bool = True, version: str | None = None) -> dict:
    """Copy a model folder to ``out_dir`` with the refiner of ``run_dir`` exported beside it.

    The refiner is exported to ONNX (float32, free batch axis) and checked against PyTorch on
    real validation views: mask probabilities within 1e-4. With ``float16_weights`` (the default)
    its weights are then stored as float16 (:func:`store_float16`: 7.5 MB instead of 15, so that a
    model and its refiner fit the package's 25-MB budget) and the stored file is checked against
    the float32 one: mask probabilities within 1e-2 (the metadata records the change measured).
    The copy's metadata records the refiner under ``refiner``; the second look that uses it is
    chosen afterwards on validation, with the stored file
    (``benchmarks/radiograph_postprocess.py --model OUT --refiner``).

    Args:
        model_dir: a model folder or registered name (its refiner, if any, is replaced).
        run_dir: a finished refiner run.
        out_dir: the model folder to write; not ``model_dir`` itself.
        check_views: validation views compared between ONNX and PyTorch.
        float16_weights: store the refiner's weights as float16.
        version: the copy's version (default: the source's); a ``changes`` line says what was added.

    Returns:
        The copy's metadata.

    Raises:
        OsteolensError: an incomplete run, a refiner trained on other images than the model, or
            ONNX and PyTorch disagreeing beyond 1e-4.
    """
    import onnx
    import onnxruntime as ort

    from osteolens.inference.lesion_malignancy import drop_reading
    from osteolens.models.export import onnx_export
    from osteolens.training.refiner import validation_views
    from osteolens.training.trainer import to_input

    source = resolve_model(model_dir)
    out_dir = Path(out_dir)
    if out_dir.resolve() == source.resolve():
        raise OsteolensError(f"{out_dir}: attach a refiner to a copy, not to the model folder itself")
    cfg, summary, net = load_refiner_run(run_dir)
    meta = json.loads((source / "metadata.json").read_text())
    if meta["training"].get("splits_sha256") != sha256_file(cfg.splits):
        raise OsteolensError(f"{run_dir}: the refiner was trained with {cfg.splits}, not the split file "
                             f"{meta['name']} {meta['version']} was trained with (sha256 differs)")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.copytree(source, out_dir)
    (out_dir / REFINER_FILE).unlink(missing_ok=True)
    onnx_path = out_dir / REFINER_FILE
    size = cfg.input_size
    outputs = ["mask_logits"] + (["malignancy_logit"] if net.malignancy is not None else [])
    onnx_export(net, (torch.zeros(1, 3, size, size),), onnx_path, ["image"], outputs,
                {"image": {0: "batch"}, **{name: {0: "batch"} for name in outputs}})
    views, _ = validation_views(cfg)
    x = to_input(views[:check_views]).contiguous()
    with torch.no_grad():  # mask probabilities, then malignancy probabilities, in one vector
        ref = np.concatenate([torch.sigmoid(t).numpy().ravel() for t in refiner_outputs(net, x) if t is not None])

    def onnx_probability() -> np.ndarray:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        return np.concatenate([1 / (1 + np.exp(-a.ravel())) for a in session.run(outputs, {"image": x.numpy()})])

    got = onnx_probability()
    diff = float(np.abs(ref - got).max())
    if diff > 1e-4:
        shutil.rmtree(out_dir)
        raise OsteolensError(f"ONNX export of the refiner {run_dir} differs from PyTorch by {diff:.2e} (> 1e-4) in "
                             "mask or malignancy probability")
    check = {"views": int(len(x)), "max_abs_diff_probability": diff, "tolerance": 1e-4}
    if float16_weights:
        n_half = store_float16(onnx_path)
        half_diff = float(np.abs(onnx_probability() - got).max())
        if half_diff > FLOAT16_TOLERANCE:
            shutil.rmtree(out_dir)
            raise OsteolensError(f"the refiner of {run_dir} with float16 weights differs from float32 by {half_diff:.2e} "
                                 f"(> {FLOAT16_TOLERANCE}) in mask or malignancy probability")
        check["float16_weights"] = {"weights": n_half, "max_abs_diff_probability_vs_float32": half_diff,
                                    "tolerance": FLOAT16_TOLERANCE}
    meta["refiner"] = {
        "file": REFINER_FILE,
        "input_size": size,
        "image_size": cfg.image_size,
        "task": "tumour mask of a view framed around one lesion (the second look of calibration.second_look)"
                + (", and that lesion's malignancy against benign (one logit; calibration.lesion_malignancy)"
                   if "malignancy_logit" in outputs else ""),
        "outputs": outputs,
        "preprocessing": "the view cut from the analysed grey image resized to image_size x image_size (as the main "
                         "network's input is made), resized to input_size x input_size (grey replicated to 3, ImageNet "
                         "mean and std); left-right flip averaged",
        "training": {"config": json.loads(cfg.model_dump_json()), **{k: summary[k] for k in (
            "n_train_images", "n_val_views", "best_epoch", "epochs_run", "train_minutes", "best_val_view_dice",
            "best_val_view_malignancy_auc", "selection") if k in summary}},
        "weights": "float16, cast to float32 when loaded (arithmetic in float32)" if float16_weights else "float32",
        "export_check": check,
        "software": {"osteolens": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                     "onnxruntime": ort.__version__},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sha256": sha256_file(onnx_path),
    }
    meta["calibration"] = drop_reading(meta["calibration"])  # fitted again for the new refiner, as is
    meta["calibration"].pop("second_look", None)  # the second look, on validation
    source_version = meta["version"]
    meta["version"] = version or source_version
    meta["changes"] = meta.get("changes", []) + [
        f"{meta['version']}: {meta['name']} {source_version}'s network and calibration with a lesion refiner attached "
        f"({size} px, validation view Dice {summary['best_val_view_dice']:.3f}); the second look that reads it is chosen "
        "on the validation split"]
    (out_dir / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta
