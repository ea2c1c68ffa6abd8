"""Shared fixtures: the real data in ../shared/data and a BTXRD manifest built once per run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("OSTEOLENS_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared(name: str) -> Path:
    """A folder of ../shared/data; fails (in CI) or skips (elsewhere) when it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        message = f"real data folder {path} not found (set OSTEOLENS_SHARED_DATA)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def btxrd_dir() -> Path:
    return shared("btxrd256")


@pytest.fixture(scope="session")
def btxrd_import(btxrd_dir, tmp_path_factory):
    from osteolens.data.importers import import_btxrd

    return import_btxrd(btxrd_dir, tmp_path_factory.mktemp("btxrd"))


@pytest.fixture(scope="session")
def btxrd_manifest(btxrd_import):
    return btxrd_import.manifest_path


@pytest.fixture(scope="session")
def tiny_dataset(btxrd_manifest, tmp_path_factory):
    """48 real BTXRD cases (16 per class, from different groups) with a train/val split file."""
    import pandas as pd

    from osteolens.data.manifest import load_manifest

    m = load_manifest(btxrd_manifest)
    f = m.to_frame()
    f["image"] = [str(m.resolve(p)) for p in f["image"]]
    f["mask"] = [str(m.resolve(p)) for p in f["mask"]]
    picked = pd.concat([f[f.label == k].drop_duplicates("group_id").iloc[:16] for k in ("normal", "benign", "malignant")])
    out = tmp_path_factory.mktemp("tiny")
    picked.to_csv(out / "manifest.csv", index=False)
    split = ["train"] * 11 + ["val"] * 5
    splits = pd.DataFrame({"case_id": picked["case_id"], "group_id": picked["group_id"], "split_group": picked["group_id"],
                           "label": picked["label"], "centre": picked["centre"], "split": split * 3})
    splits.to_csv(out / "splits.csv", index=False)
    return out


@pytest.fixture(scope="session")
def tiny_config(tiny_dataset):
    """The training config of :func:`tiny_run`: one epoch on the 33 training images at 64 px."""
    from osteolens.training.config import TrainConfig

    return TrainConfig(manifest=tiny_dataset / "manifest.csv", splits=tiny_dataset / "splits.csv", image_size=64,
                       epochs=1, batch_size=11, cache_dir=tiny_dataset / "cache", model_name="tiny-test-model")


@pytest.fixture(scope="session")
def tiny_run(tiny_config, tmp_path_factory):
    """A real model trained for one epoch on 33 images at 64 px (seconds on the CPU)."""
    from osteolens.training.trainer import train

    run = tmp_path_factory.mktemp("run")
    (run / "metrics.csv").write_text("epoch,stale\n1,from an earlier run\n")  # a rerun must not append to it
    summary = train(tiny_config, run, show_progress=False)
    return run, summary


@pytest.fixture(scope="session")
def tiny_model(tiny_run, tmp_path_factory):
    from osteolens.models.export import export_run

    folder = tmp_path_factory.mktemp("model") / "tiny"
    export_run(tiny_run[0], folder, check_images=5)
    return folder


@pytest.fixture(scope="session")
def tiny_refiner_run(tiny_dataset, tmp_path_factory):
    """A real lesion refiner trained for one epoch on views of the tiny set's training tumours at 64 px."""
    from osteolens.training.refiner import RefinerConfig, train_refiner

    cfg = RefinerConfig(manifest=tiny_dataset / "manifest.csv", splits=tiny_dataset / "splits.csv", image_size=64,
                        input_size=64, epochs=1, lesion_views=4, normal_views=2, warmup_steps=1,
                        cache_dir=tiny_dataset / "cache")
    run = tmp_path_factory.mktemp("refiner_run")
    return run, train_refiner(cfg, run, show_progress=False)


@pytest.fixture(scope="session")
def tiny_malignancy_refiner_run(tiny_dataset, tmp_path_factory):
    """:func:`tiny_refiner_run` with the malignancy head (one epoch, 64 px)."""
    from osteolens.training.refiner import RefinerConfig, train_refiner

    cfg = RefinerConfig(manifest=tiny_dataset / "manifest.csv", splits=tiny_dataset / "splits.csv", image_size=64,
                        input_size=64, epochs=1, lesion_views=4, normal_views=2, warmup_steps=1, malignancy_weight=0.5,
                        cache_dir=tiny_dataset / "cache")
    run = tmp_path_factory.mktemp("malignancy_refiner_run")
    return run, train_refiner(cfg, run, show_progress=False)
