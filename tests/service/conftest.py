"""Fixtures of the service tests: one real uvicorn server per module, with the tiny real model."""

import pytest

from osteolens.service.app import create_app, serve_in_background

KEY = "test-key-123"


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    """A real uvicorn server on a free loopback port, with the tiny real model; yields its base URL."""
    app = create_app(tiny_model, api_keys={KEY}, max_upload_mb=1.0, storage=tmp_path_factory.mktemp("store"))
    base, srv = serve_in_background(app)
    yield base
    srv.should_exit = True
