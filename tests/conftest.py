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
