"""Find exported models by name and refuse any whose files do not match their checksums.

Shipped models live in ``osteolens/models/store/<name>/`` (``model.onnx``, ``metadata.json``,
``MODEL_CARD.md``, and ``refiner.onnx`` for a model with a lesion refiner) and are listed in
``store/registry.json`` with the sha256 of their ONNX and metadata files. A model folder given by
path is checked against the sha256 in its own metadata. A refiner is checked against the sha256
its model's metadata records (``refiner.sha256``), so the registry's checksum of the metadata
covers it too.

Example:
    >>> from osteolens.models.registry import load_model, list_models
    >>> list_models()                                         # doctest: +SKIP
    ['osteolens-radiograph']
    >>> model = load_model("osteolens-radiograph")            # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from osteolens.errors import OsteolensError
from osteolens.checksums import sha256_file

DEFAULT_MODEL = "osteolens-radiograph"
REFINER_FILE = "refiner.onnx"


class ModelIntegrityError(OsteolensError):
    """A model file does not match its recorded checksum (corrupt or tampered)."""


def store_dir() -> Path:
    """The folder of shipped models."""
    return Path(str(resources.files("osteolens") / "models" / "store"))


def _registry() -> dict:
    path = store_dir() / "registry.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def list_models() -> list[str]:
    """Names of the shipped models."""
    return sorted(_registry())


def register(model_dir: str | Path) -> dict:
    """Record a model folder inside the store in ``registry.json`` (used when shipping a model)."""
    model_dir = Path(model_dir)
    meta = json.loads((model_dir / "metadata.json").read_text())
    reg = _registry()
    reg[meta["name"]] = {
        "folder": model_dir.name,
        "version": meta["version"],
        "sha256_onnx": sha256_file(model_dir / "model.onnx"),
        "sha256_metadata": sha256_file(model_dir / "metadata.json"),
    }
    (store_dir() / "registry.json").write_text(json.dumps(reg, indent=2, sort_keys=True) + "\n")
    return reg[meta["name"]]


def ship(model_dir: str | Path) -> Path:
    """Copy an exported model folder into the package's store and register it (for maintainers)."""
    model_dir = Path(model_dir)
    meta = json.loads((model_dir / "metadata.json").read_text())
    target = store_dir() / meta["name"]
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in ("model.onnx", "metadata.json", "MODEL_CARD.md", REFINER_FILE):
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, target / name)
    register(target)
    return target


def copy_refiner(source_folder: str | Path, meta: dict, out_dir: str | Path) -> None:
    """Copy a model's lesion refiner beside a derived copy (int8, recalibrated, ensemble) whose metadata keeps it."""
    if "refiner" in meta:
        shutil.copyfile(Path(source_folder) / meta["refiner"]["file"], Path(out_dir) / meta["refiner"]["file"])


def resolve_model(name_or_path: str | Path = DEFAULT_MODEL) -> Path:
    """The verified folder of a model given by registered name or by path.

    Raises:
        OsteolensError: unknown name or missing files.
        ModelIntegrityError: a checksum does not match.
    """
    candidate = Path(name_or_path)
    if candidate.is_dir():
        _check_files(candidate)
        meta = json.loads((candidate / "metadata.json").read_text())
        _check_sha(candidate / "model.onnx", meta.get("sha256"), "metadata.json")
        _check_refiner(candidate, meta)
        return candidate
    reg = _registry()
    entry = reg.get(str(name_or_path))
    if entry is None:
        known = ", ".join(reg) or "none shipped"
        raise OsteolensError(f"unknown model {name_or_path!r}: not a model folder and not a registered name ({known})")
    folder = store_dir() / entry["folder"]
    _check_files(folder)
    _check_sha(folder / "metadata.json", entry["sha256_metadata"], "registry.json")
    _check_sha(folder / "model.onnx", entry["sha256_onnx"], "registry.json")
    _check_refiner(folder, json.loads((folder / "metadata.json").read_text()))
    return folder


def _check_files(folder: Path) -> None:
    for name in ("model.onnx", "metadata.json"):
        if not (folder / name).is_file():
            raise OsteolensError(f"{folder / name}: missing from the model folder")


def _check_refiner(folder: Path, meta: dict) -> None:
    """A model whose metadata names a refiner must have it, matching the sha256 recorded there."""
    if "refiner" not in meta:
        return
    path = folder / meta["refiner"]["file"]
    if not path.is_file():
        raise OsteolensError(f"{path}: missing from the model folder (its metadata.json names a lesion refiner)")
    _check_sha(path, meta["refiner"].get("sha256"), "metadata.json")


def _check_sha(path: Path, expected: str | None, source: str) -> None:
    if not expected:
        raise ModelIntegrityError(f"{path}: no sha256 recorded in {source}; refusing to load an unverified model")
    actual = sha256_file(path)
    if actual != expected:
        raise ModelIntegrityError(
            f"{path}: sha256 {actual[:16]}... does not match {expected[:16]}... recorded in {source}; "
            "the file is corrupt or has been modified, refusing to load it"
        )


@dataclass
class LoadedModel:
    """An ONNX Runtime session with the model's metadata."""

    folder: Path
    metadata: dict
    session: object
    refiner: object = None  # the lesion refiner's session, where the model has one

    @property
    def name(self) -> str:
        return self.metadata["name"]

    @property
    def image_size(self) -> int:
        return int(self.metadata["preprocessing"]["image_size"])

    @property
    def uses_clinical(self) -> bool:
        return bool(self.metadata["clinical"]["used"])

    def run(self, images: np.ndarray, clinical: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Run the network on ``(B, 3, S, S)`` inputs; returns the raw outputs by name."""
        feeds = {"image": images.astype(np.float32, copy=False)}
        if self.uses_clinical:
            if clinical is None:
                raise OsteolensError(f"model {self.name} needs clinical inputs")
            feeds["clinical"] = clinical.astype(np.float32, copy=False)
        names = self.metadata["outputs"]
        return dict(zip(names, self.session.run(names, feeds)))

    @property
    def refiner_size(self) -> int:
        """Square input size of the lesion refiner."""
        if self.refiner is None:
            raise OsteolensError(f"model {self.name} has no lesion refiner")
        return int(self.metadata["refiner"]["input_size"])

    @property
    def refiner_image_size(self) -> int:
        """Size of the square grey the refiner's views are cut from: its training cache's (the main network's
        input size for refiners that do not record one)."""
        if self.refiner is None:
            raise OsteolensError(f"model {self.name} has no lesion refiner")
        return int(self.metadata["refiner"].get("image_size", self.image_size))

    @property
    def reads_lesion_malignancy(self) -> bool:
        """Whether the model's refiner has the malignancy head (:mod:`osteolens.inference.lesion_malignancy`)."""
        return self.refiner is not None and "malignancy_logit" in self.metadata["refiner"].get("outputs", [])

    def run_refiner(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """The lesion refiner's outputs by name for ``(B, 3, S, S)`` views: ``mask_logits`` ``(B, 1, S, S)``,
        and ``malignancy_logit`` ``(B,)`` for a refiner with the malignancy head."""
        if self.refiner is None:
            raise OsteolensError(f"model {self.name} has no lesion refiner")
        names = self.metadata["refiner"].get("outputs", ["mask_logits"])
        return dict(zip(names, self.refiner.run(names, {"image": images.astype(np.float32, copy=False)})))


def load_model(name_or_path: str | Path = DEFAULT_MODEL, threads: int = 2, spin: bool = True) -> LoadedModel:
    """Verify and load a model for inference on the CPU.

    Args:
        name_or_path: registered name or model folder.
        threads: ONNX Runtime intra-op threads.
        spin: let idle ONNX Runtime threads spin-wait (fastest alone; a server that shares its
            cores with HTTP work does better without: about 35 vs 30 analyses/s and p95 260-295 vs
            310 ms at 8 clients on 2 cores, benchmarks/service_load.py). A model with a lesion refiner
            never spins: the two sessions' threads would spin against each other on the same cores
            (the analysis of a 256-px image took 73-76 ms with both spinning against 53-61 without, on
            2 AVX2 cores).
    """
    import onnxruntime as ort

    folder = resolve_model(name_or_path)
    meta = json.loads((folder / "metadata.json").read_text())
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spin or "refiner" in meta:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")

    def session(name: str):
        return ort.InferenceSession(str(folder / name), sess_options=opts, providers=["CPUExecutionProvider"])

    refiner = session(meta["refiner"]["file"]) if "refiner" in meta else None
    return LoadedModel(folder, meta, session("model.onnx"), refiner)
