"""Several exported radiograph networks as one model: their outputs averaged inside one ONNX graph.

Members must have been trained on the same split file (so that the validation split holds none of
their training images) and must agree on what they read and write: input size, normalisation,
clinical features, labels, subtypes and output names. The merged graph takes the usual ``image`` and
``clinical`` inputs, runs every member on them, and returns the mean of each output: class and
subtype logits, mask logits and class activation maps (the mean of the members' maps is the map of
the mean logits, so the saliency still explains the class that is reported). Because the file keeps
the single-model contract, every tool reads it unchanged: ``osteolens analyze``, the service,
``osteolens quantize`` (an int8 ensemble), ``osteolens recalibrate`` and the benchmarks.

Images are prepared as the first member prepares them (its border crop included). The mean logits
are calibrated on the validation split with the training's own code
(:func:`osteolens.training.trainer.calibration_from_predictions`), and every member is scored there
the same way, so the record says what the ensemble adds. The merged file is checked against the
members: on validation images its raw outputs equal the mean of theirs. Mask post-processing is kept
from the first member; re-choose it with ``benchmarks/radiograph_postprocess.py --write``.

Example:
    >>> from osteolens.models.ensemble import ensemble_models
    >>> meta = ensemble_models(["osteolens-radiograph", "work/models/v140"], "work/models/ens")   # doctest: +SKIP
    >>> meta["ensemble"]["validation"]["figures"]["val_macro_auc"]                            # doctest: +SKIP
    {'members': [0.908, 0.903], 'ensemble': 0.918}
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from osteolens import __version__
from osteolens.checksums import sha256_file
from osteolens.errors import OsteolensError
from osteolens.models.recalibrate import COMPARED, KEPT, predict_onnx, training_data
from osteolens.models.registry import LoadedModel, copy_refiner, load_model

#: metadata entries every member must share
SHARED = ("labels", "subtypes", "inputs", "outputs", "clinical", "tta")
#: preprocessing entries every member must share (the border crop may differ: the first member's is used)
SHARED_PREPROCESSING = ("image_size", "mean", "std", "channels")
COMBINATION = ("mean of the members' raw outputs inside one ONNX graph: class and subtype logits, mask logits and "
               "class activation maps; then one temperature and one set of thresholds fitted on validation")


def average_networks(onnx_paths: list[str | Path], out_path: str | Path) -> None:
    """Write one ONNX graph that runs every network on the same inputs and returns the mean of each output.

    Args:
        onnx_paths: two or more ONNX files with the same input and output names and opset.
        out_path: the merged file.
    """
    import onnx
    from onnx import compose, helper

    models = [onnx.load(str(p)) for p in onnx_paths]
    first = models[0]
    inputs = [i.name for i in first.graph.input]
    outputs = [o.name for o in first.graph.output]
    for path, m in zip(onnx_paths, models):
        if [i.name for i in m.graph.input] != inputs or [o.name for o in m.graph.output] != outputs:
            raise OsteolensError(f"{path}: inputs/outputs differ from {onnx_paths[0]}'s ({inputs} -> {outputs})")
        if {(o.domain, o.version) for o in m.opset_import} != {(o.domain, o.version) for o in first.opset_import}:
            raise OsteolensError(f"{path}: opset differs from {onnx_paths[0]}'s; export the members with one osteolens")
    nodes, initializers, value_info = [], [], []
    for k, m in enumerate(models):
        g = compose.add_prefix(m, prefix=f"m{k}_").graph
        shared = {f"m{k}_{name}": name for name in inputs}
        for node in g.node:
            node.input[:] = [shared.get(x, x) for x in node.input]
            nodes.append(node)
        initializers.extend(g.initializer)
        value_info.extend(g.value_info)
    initializers.append(helper.make_tensor("ensemble_weight", onnx.TensorProto.FLOAT, [], [1.0 / len(models)]))
    for name in outputs:
        nodes.append(helper.make_node("Sum", [f"m{k}_{name}" for k in range(len(models))], [f"ensemble_sum_{name}"]))
        nodes.append(helper.make_node("Mul", [f"ensemble_sum_{name}", "ensemble_weight"], [name]))
    graph = helper.make_graph(nodes, "osteolens_ensemble", list(first.graph.input), list(first.graph.output),
                              initializer=initializers, value_info=value_info)
    merged = helper.make_model(graph, opset_imports=list(first.opset_import), ir_version=first.ir_version,
                               producer_name="osteolens", producer_version=__version__)
    onnx.checker.check_model(merged)
    onnx.save(merged, str(out_path))


def _check_members(members: list[LoadedModel]) -> None:
    """Refuse members that cannot be averaged or calibrated together, naming the first difference."""
    first = members[0].metadata
    seen = {}
    for m in members:
        meta, where = m.metadata, m.folder
        if meta["sha256"] in seen:
            raise OsteolensError(f"{where}: the same network as {seen[meta['sha256']]}; an ensemble of copies only "
                                 "doubles the time")
        seen[meta["sha256"]] = where
        if "quantization" in meta:
            raise OsteolensError(f"{where}: an int8 copy; ensemble the float32 models, then quantize the ensemble")
        if "ensemble" in meta:
            raise OsteolensError(f"{where}: already an ensemble; give its members instead")
        for key in SHARED:
            if meta.get(key) != first.get(key):
                raise OsteolensError(f"{where}: '{key}' differs from {members[0].folder}'s; members must read and write the same")
        for key in SHARED_PREPROCESSING:
            if meta["preprocessing"].get(key) != first["preprocessing"].get(key):
                raise OsteolensError(f"{where}: preprocessing '{key}' differs from {members[0].folder}'s")
        if meta["training"].get("splits_sha256") != first["training"].get("splits_sha256"):
            raise OsteolensError(f"{where}: trained on another split file than {members[0].folder}; the validation split "
                                 "that calibrates the ensemble could hold its training images")


def ensemble_models(models: list[str | Path], out_dir: str | Path, name: str | None = None, version: str | None = None,
                    manifest: str | Path | None = None, splits: str | Path | None = None, n_check: int = 8) -> dict:
    """Write a model folder whose network is the mean of ``models``, calibrated on their validation split.

    Args:
        models: two or more registered names or folders of float32 radiograph models.
        out_dir: the model folder to write (``model.onnx``, ``metadata.json``); not a member's.
        name: the ensemble's name (default ``<first member's name>-ensemble``).
        version: its version (default: the first member's).
        manifest, splits: the members' training data (default: the paths in the first member's metadata).
        n_check: validation images on which the merged file is compared with the members' mean.

    Returns:
        The ensemble's metadata.

    Raises:
        OsteolensError: fewer than two members, members that differ, missing training data, or a merged
            file whose outputs are not the members' mean.
    """
    from osteolens.training.trainer import calibration_from_predictions, split_indices

    if len(models) < 2:
        raise OsteolensError(f"an ensemble needs two or more models, got {len(models)}")
    members = [load_model(m) for m in models]
    out_dir = Path(out_dir)
    for m in members:
        if out_dir.resolve() == Path(m.folder).resolve():
            raise OsteolensError(f"{out_dir}: a member's own folder; write the ensemble elsewhere")
    _check_members(members)
    meta = json.loads(json.dumps(members[0].metadata))
    cfg, data = training_data(meta, manifest, splits)
    _, val_idx = split_indices(cfg, data.case_ids)
    images, labels, masks = data.images[val_idx], data.labels[val_idx], data.masks[val_idx]
    clinical = data.clinical[val_idx] if members[0].uses_clinical else None

    out_dir.mkdir(parents=True, exist_ok=True)
    average_networks([Path(m.folder) / "model.onnx" for m in members], out_dir / "model.onnx")
    copy_refiner(members[0].folder, meta, out_dir)  # the first member's refiner, with its second look
    meta["sha256"] = sha256_file(out_dir / "model.onnx")  # provisional metadata, so that the file loads for scoring
    (out_dir / "metadata.json").write_text(json.dumps(meta))
    merged = load_model(out_dir)
    check = _check_mean(merged, members, images[:n_check], None if clinical is None else clinical[:n_check])

    calibrations = [calibration_from_predictions(predict_onnx(m, images, clinical), labels, masks, cfg) for m in members]
    calibration = calibration_from_predictions(predict_onnx(merged, images, clinical), labels, masks, cfg)
    figures = {k: {"members": [round(c[k], 4) for c in calibrations], "ensemble": round(calibration[k], 4)} for k in COMPARED}
    member_info = [{"name": m.metadata["name"], "version": m.metadata["version"], "sha256": m.metadata["sha256"],
                    "training": {k: m.metadata["training"].get(k) for k in ("best_epoch", "epochs_run", "train_minutes",
                                                                             "stop_reason")},
                    "learning_rate": m.metadata["training"].get("config", {}).get("lr")} for m in members]
    kept = {k: meta["calibration"][k] for k in KEPT if k in meta["calibration"]}
    meta.pop("export_check", None)  # it compared the first member's ONNX with PyTorch
    meta.pop("recalibration", None)
    meta.update({
        "name": name or f"{meta['name']}-ensemble",
        "version": version or meta["version"],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "calibration": {**calibration, **kept},
        "ensemble": {
            "members": member_info,
            "combination": COMBINATION,
            "preprocessing_from": member_info[0]["name"] + " " + member_info[0]["version"],
            "kept_from_first_member": sorted(kept),
            "check": check,
            "validation": {"n_images": int(len(val_idx)), "figures": figures,
                           "note": "each member and the ensemble calibrated on these images; Dice at each one's best mask "
                                   "threshold, before post-processing"},
        },
        "software": {**meta.get("software", {}), "osteolens": __version__},
        "sha256": sha256_file(out_dir / "model.onnx"),
    })
    meta["changes"] = [  # a new model: its members' histories are theirs (in their own metadata)
        f"{meta['version']}: {meta['name']}, the mean of " + ", ".join(f"{m['name']} {m['version']}" for m in member_info)
        + "; on the validation split, each calibrated there, members -> ensemble: "
        + members_to_ensemble(figures)]
    (out_dir / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def members_to_ensemble(figures: dict) -> str:
    """``val_macro_auc 0.908/0.903 -> 0.918, ...`` from an ensemble's validation figures."""
    return ", ".join(f"{k} {'/'.join(f'{x:.3f}' for x in v['members'])} -> {v['ensemble']:.3f}" for k, v in figures.items())


def _check_mean(merged: LoadedModel, members: list[LoadedModel], images_u8: np.ndarray, clinical: np.ndarray | None,
                tolerance: float = 1e-4) -> dict:
    """The merged file's raw outputs against the mean of the members' on real images; refuse a mismatch."""
    from osteolens.transforms.preprocess import normalise

    x = np.ascontiguousarray(normalise(images_u8.astype(np.float32) / 255.0))
    c = None if clinical is None else clinical.astype(np.float32)
    got = merged.run(x, c)
    runs = [m.run(x, c) for m in members]
    diff = {}
    for key, value in got.items():
        mean = np.mean([r[key] for r in runs], axis=0)
        diff[key] = float(np.abs(value - mean).max() / max(1.0, float(np.abs(mean).max())))
    worst = max(diff, key=diff.get)
    if diff[worst] > tolerance:
        raise OsteolensError(f"{merged.folder}: merged output '{worst}' differs from the members' mean by {diff[worst]:.2e} "
                             f"(relative to its largest value; allowed {tolerance})")
    return {"n_images": int(len(x)), "max_rel_diff": {k: float(f"{v:.2e}") for k, v in diff.items()}, "tolerance": tolerance}
