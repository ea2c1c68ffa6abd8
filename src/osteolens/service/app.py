"""The osteolens HTTP API (FastAPI).

- ``POST /v1/analyses``: multipart upload of a radiograph (DICOM, PNG, JPEG, TIFF, BMP) with
  optional form fields ``age``, ``sex``, ``region``, ``view`` and ``site`` (read for the region when no
  region is given), and ``laterality`` (``L``, ``R``, ``B``: with the body part, which views read together);
  returns the analysis JSON.
- ``GET /v1/analyses/{id}`` and ``.../mask``, ``.../overlay``, ``.../report``;
  ``DELETE /v1/analyses/{id}`` removes an analysis and the upload it was made from.
- ``POST /v1/studies``: JSON body ``{"analyses": [id, ...], "study": optional name}``: analyses already
  made, read together as the views of one study (:mod:`osteolens.inference.study`); unknown ids 404,
  a repeated id or none 422, views of different body parts or sides 422, analyses made by another model 409.
  ``POST /v1/studies/sr`` (same body): that reading as one DICOM SR (TID 1500) in the views' DICOM study, for two or
  more DICOM uploads of one study (422 otherwise); nothing is stored.
- ``POST /v1/scores/mirels`` and ``/v1/scores/sins``: JSON body with the score's fields;
  the total, its parts and the published interpretation (an invalid value: 422 naming it).
- ``GET /healthz``: no key needed.

Every other route needs an API key in the ``X-API-Key`` header. Keys come from the
``OSTEOLENS_API_KEYS`` environment variable (comma-separated) or a file with one key per line.
Uploads over the size limit get 413, unreadable images 400, missing fields 422. The model is
loaded once and shared; analyses run in worker threads and write to their own folders. Logs
carry the analysis id, status and duration, never file names or clinical data.

An analysis folder holds the uploaded file, often a DICOM with the patient's name and IDs, so
the service does not keep it for ever: analyses older than ``keep_hours`` (24 by default) are
deleted (:func:`expire_analyses`, run at start and then at most once a minute as requests come),
and a client may delete its own at once.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from osteolens import RESEARCH_NOTICE, __version__
from osteolens.errors import OsteolensError
from osteolens.models.registry import DEFAULT_MODEL, LoadedModel, load_model

log = logging.getLogger("osteolens.service")
_ID = re.compile(r"^[0-9a-f]{32}$")
DEFAULT_KEEP_HOURS = 24.0
MAX_STUDY_VIEWS = 20  # an examination has two or three views
SWEEP_SECONDS = 60.0


def expire_analyses(store: str | Path, keep_seconds: float, now: float | None = None) -> list[str]:
    """Delete the analysis folders in ``store`` made more than ``keep_seconds`` ago.

    An analysis's age is that of its result JSON, written once when it finished (files a client
    asks for later, such as the overlay, do not make it younger); a folder without one (an upload
    that is still being analysed, or one cut short) counts from its own last change. Only folders
    named like analysis ids are touched.

    Returns:
        The ids deleted.

    Example:
        >>> import os, tempfile
        >>> store = Path(tempfile.mkdtemp()); old = store / ("a" * 32); old.mkdir()
        >>> _ = (old / "x.json").write_text("{}"); os.utime(old / "x.json", (0, 0))
        >>> (store / ("b" * 32)).mkdir()
        >>> expire_analyses(store, keep_seconds=3600) == ["a" * 32], sorted(p.name[0] for p in store.iterdir())
        (True, ['b'])
    """
    now = time.time() if now is None else now
    gone = []
    for folder in Path(store).iterdir():
        if not (_ID.match(folder.name) and folder.is_dir()):
            continue
        try:
            made = max((f.stat().st_mtime for f in folder.glob("*.json")), default=folder.stat().st_mtime)
        except FileNotFoundError:  # deleted meanwhile (by a client)
            continue
        if now - made > keep_seconds:
            shutil.rmtree(folder, ignore_errors=True)
            gone.append(folder.name)
    return gone


def load_api_keys(keys_file: str | Path | None = None) -> set[str]:
    """API keys from ``OSTEOLENS_API_KEYS`` and/or a file (one key per line, ``#`` comments)."""
    keys = {k.strip() for k in os.environ.get("OSTEOLENS_API_KEYS", "").split(",") if k.strip()}
    if keys_file:
        path = Path(keys_file)
        if not path.is_file():
            raise OsteolensError(f"{path}: API keys file not found")
        keys |= {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}
    return keys


def create_app(model: str | Path | LoadedModel = DEFAULT_MODEL, api_keys: set[str] | None = None,
               max_upload_mb: float = 50.0, storage: str | Path | None = None,
               concurrent_analyses: int | None = None, keep_hours: float | None = DEFAULT_KEEP_HOURS) -> FastAPI:
    """Build the service.

    Args:
        model: model name, folder or loaded model (loaded once here).
        api_keys: accepted keys; ``None`` reads them with :func:`load_api_keys`. An empty set
            is refused: the service never runs open.
        max_upload_mb: upload size limit (413 beyond).
        storage: folder for analyses (default: a new temporary folder).
        concurrent_analyses: analyses run at once; the rest queue. Default: one per CPU core,
            each with one ONNX Runtime thread (the cores are shared out, not fought over). On
            2 cores under 8 clients this gave 36-38 analyses/s and p95 261-277 ms, against
            28-32/s and 299-334 ms for one analysis at a time on two threads, with model 1.0.0;
            with model 1.3.0, 32.8/s and p95 276 ms against 27.0/s and 363 ms
            (benchmarks/service_load.py, same machine, same hour). With model 1.4.0 (same
            network as 1.3.0), 30.0/s and p95 311 ms in a quiet hour
            (benchmarks/results/service_load_quiet.json); with 1.5.0 (same network again),
            27.7/s and p95 308 ms (benchmarks/results/service_load_v150.json). On a 2-core CPU
            with AVX2 only, 1.5.1 gave 13.3/s and p95 680 ms, and its int8 copy
            (``osteolens-radiograph-int8``) 18.6/s and p95 513 ms (service_load_avx2[_int8].json).
        keep_hours: analyses (and their uploads) older than this are deleted; ``None`` or 0 keeps
            them until a client deletes them.

    The model runs once on a synthetic grey ramp before the app is returned (:func:`osteolens.inference.analyze.warm_up`), so the
    first client does not wait for lazy imports and ONNX Runtime's first allocations.
    """
    keys = load_api_keys() if api_keys is None else set(api_keys)
    if not keys:
        raise OsteolensError("no API keys: set OSTEOLENS_API_KEYS (comma-separated) or give a keys file")
    cores = os.cpu_count() or 1
    concurrent_analyses = concurrent_analyses or cores
    loaded = model if isinstance(model, LoadedModel) else \
        load_model(model, threads=max(1, cores // concurrent_analyses), spin=False)
    from osteolens.inference.analyze import warm_up

    log.info("model %s %s warmed up in %.0f ms", loaded.name, loaded.metadata["version"], 1000 * warm_up(loaded))
    store = Path(storage) if storage else Path(tempfile.mkdtemp(prefix="osteolens-service-"))
    store.mkdir(parents=True, exist_ok=True)
    limit = int(max_upload_mb * 1024 * 1024)
    keep_seconds = 3600.0 * keep_hours if keep_hours and keep_hours > 0 else None
    sweep = {"last": float("-inf"), "lock": threading.Lock()}

    def sweep_now_and_then() -> None:
        """Delete expired analyses, at most once every :data:`SWEEP_SECONDS`."""
        if keep_seconds is None or time.monotonic() - sweep["last"] < SWEEP_SECONDS:
            return
        if sweep["lock"].acquire(blocking=False):
            try:
                sweep["last"] = time.monotonic()
                gone = expire_analyses(store, keep_seconds)
                if gone:
                    log.info("deleted %d analyses older than %g h", len(gone), keep_hours)
            finally:
                sweep["lock"].release()

    sweep_now_and_then()
    gate = threading.BoundedSemaphore(max(1, concurrent_analyses))
    app = FastAPI(title="osteolens", version=__version__,
                  description=f"AI-assisted analysis of bone-tumour radiographs. {RESEARCH_NOTICE}")
    app.state.model, app.state.store, app.state.limit = loaded, store, limit

    def require_key(x_api_key: str | None = Header(default=None)) -> None:
        if not x_api_key or not any(secrets.compare_digest(x_api_key, k) for k in keys):
            raise HTTPException(status_code=401, detail="missing or invalid API key (header X-API-Key)")

    @app.middleware("http")
    async def size_limit(request: Request, call_next):
        length = request.headers.get("content-length")
        if request.method == "POST" and length and length.isdigit() and int(length) > limit:
            return JSONResponse(status_code=413, content={"detail": f"upload of {int(length)} bytes exceeds the limit of {limit} bytes"})
        if request.url.path.startswith("/v1/analyses"):
            sweep_now_and_then()
        return await call_next(request)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "model": loaded.name, "version": loaded.metadata["version"], "osteolens": __version__,
                "notice": RESEARCH_NOTICE}

    @app.post("/v1/scores/{name}", dependencies=[Depends(require_key)])
    def score(name: str, fields: dict) -> dict:
        from osteolens.clinical.scores import mirels, sins

        functions = {"mirels": (mirels, ("site", "pain", "lesion", "size")),
                     "sins": (sins, ("location", "pain", "lesion", "alignment", "collapse", "posterolateral"))}
        if name not in functions:
            raise HTTPException(status_code=404, detail=f"unknown score {name!r}; scores: mirels, sins")
        fn, needed = functions[name]
        missing = [f for f in needed if f not in fields]
        unknown = sorted(set(fields) - set(needed))
        if missing or unknown:
            raise HTTPException(status_code=422, detail=f"{name}: missing fields {missing}, unknown fields {unknown}; "
                                                        f"give {', '.join(needed)}")
        try:
            result = fn(**{f: str(fields[f]) for f in needed})
        except OsteolensError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        return {**result.to_dict(), "notice": RESEARCH_NOTICE}

    @app.post("/v1/analyses", dependencies=[Depends(require_key)])
    def create_analysis(file: UploadFile = File(...), age: float | None = Form(default=None), sex: str | None = Form(default=None),
                        region: str | None = Form(default=None), view: str | None = Form(default=None),
                        site: str | None = Form(default=None), laterality: str | None = Form(default=None)) -> JSONResponse:
        from osteolens.inference.analyze import analyze

        t0 = time.perf_counter()
        analysis_id = uuid.uuid4().hex
        folder = store / analysis_id
        (folder / "input").mkdir(parents=True)
        name = Path(file.filename or "upload").name or "upload"
        name = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100].lstrip(".") or "upload"  # "..", ".": not a file name
        target = folder / "input" / name
        size = 0
        with open(target, "wb") as fh:
            while chunk := file.file.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    fh.close()
                    shutil.rmtree(folder, ignore_errors=True)
                    raise HTTPException(status_code=413, detail=f"upload exceeds the limit of {limit} bytes")
                fh.write(chunk)
        clinical = {name: {"age": age, "sex": sex, "region": region, "view": view, "site": site, "laterality": laterality,
                            "_where": "upload form"}}
        try:
            with gate:
                # layers as arrays, overlay and report on first request: an upload pays only for what
                # every client needs (the JSON, the mask, DICOM objects for DICOM inputs)
                result = analyze([target], folder, model=loaded, clinical=clinical, layers="npy", dicom_out=True,
                                 report=False, overlays=False)[0]
        except OsteolensError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            log.info("analysis %s rejected (%.0f ms)", analysis_id, 1000 * (time.perf_counter() - t0))
            raise HTTPException(status_code=400, detail=str(exc).replace(str(target), name)) from exc
        if result.status != "ok":
            shutil.rmtree(folder, ignore_errors=True)
            log.info("analysis %s: unreadable input (%.0f ms)", analysis_id, 1000 * (time.perf_counter() - t0))
            raise HTTPException(status_code=400, detail=result.error.replace(str(target), name))
        body = _body(folder, analysis_id, Path(name).stem)
        log.info("analysis %s ok (%.0f ms)", analysis_id, 1000 * (time.perf_counter() - t0))
        return JSONResponse(status_code=201, content=body)

    kept_for = f" (analyses are deleted {keep_hours:g} h after they are made)" if keep_seconds else ""

    def _folder(analysis_id: str) -> Path:
        folder = store / analysis_id
        if not _ID.match(analysis_id) or not folder.is_dir():
            raise HTTPException(status_code=404, detail=f"no analysis {analysis_id!r}{kept_for}")
        return folder

    @app.delete("/v1/analyses/{analysis_id}", status_code=204, dependencies=[Depends(require_key)])
    def delete_analysis(analysis_id: str) -> Response:
        """Delete an analysis, its outputs and the uploaded file it was made from."""
        shutil.rmtree(_folder(analysis_id), ignore_errors=True)
        log.info("analysis %s deleted by a client", analysis_id)
        return Response(status_code=204)

    def _stem(folder: Path) -> str:
        return next(folder.glob("*.json")).stem

    def _read_together(body: dict):
        """The views named by ``body["analyses"]`` read together: ``(reading, views, ids)``; 4xx for a bad request."""
        from osteolens.inference.analyze import Analysis
        from osteolens.inference.study import read_study

        ids = body.get("analyses")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise HTTPException(status_code=422, detail="'analyses' must be a non-empty list of analysis ids")
        if len(set(ids)) != len(ids):
            raise HTTPException(status_code=422, detail="an analysis id is given twice; each view counts once")
        if len(ids) > MAX_STUDY_VIEWS:
            raise HTTPException(status_code=422, detail=f"{len(ids)} analyses; a study reads at most {MAX_STUDY_VIEWS}")
        views = [json.loads((folder / f"{_stem(folder)}.json").read_text()) for folder in map(_folder, ids)]
        other = [i for i, v in zip(ids, views) if v.get("model", {}).get("sha256") != loaded.metadata["sha256"]]
        if other:  # a store kept across a model change: probabilities of two models do not combine
            raise HTTPException(status_code=409, detail=f"analyses {', '.join(other)} were made by another model")
        named = {v.get("study") or "" for v in views}  # the views' own study (a DICOM upload's UID), when they share one
        study = str(body.get("study") or (named.pop() if len(named) == 1 else "") or "study")
        try:
            reading = read_study(study, [Analysis.from_json(v) for v in views], loaded.metadata["calibration"],
                                 loaded.metadata["subtypes"])
        except ValueError as exc:  # views of another body part or side: a comparison film is read apart
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        return reading, views, ids

    @app.post("/v1/studies", dependencies=[Depends(require_key)])
    def read_views_together(body: dict) -> dict:
        """Read analyses already made (by id) together, as the views of one study."""
        from osteolens.inference.analyze import REFER
        from osteolens.inference.study import COMBINE_RULE

        reading, _, ids = _read_together(body)
        return {**{k: getattr(reading, k) for k in ("study", "body_part", "laterality", "label", "subtype", "p_subtype",
                                                      "uncertainty", "p_normal", "p_benign", "p_malignant")},
                "decision": REFER if reading.label == "indeterminate" else reading.label,
                "analyses": ids, "images": reading.images, "images_with_lesion": reading.with_lesion,
                "rule": COMBINE_RULE, "notice": RESEARCH_NOTICE,
                "model": {"name": loaded.name, "version": loaded.metadata["version"]}}

    @app.post("/v1/studies/sr", dependencies=[Depends(require_key)])
    def study_sr(body: dict) -> Response:
        """The same reading as ``POST /v1/studies``, as one DICOM SR in the views' DICOM study (two or more DICOM
        uploads of one study); nothing is stored."""
        from osteolens.io.dicom_write import write_study_sr

        reading, views, ids = _read_together(body)
        if len(ids) < 2:
            raise HTTPException(status_code=422, detail="one view: its own SR holds its reading (its links.dicom_sr)")
        plain = [i for i, v in zip(ids, views) if v.get("input", {}).get("properties", {}).get("format") != "dicom"]
        if plain:
            raise HTTPException(status_code=422, detail=f"analyses {', '.join(plain)} are not DICOM uploads; an SR "
                                                        "joins the DICOM study of its source images")
        uids = {v["input"]["properties"].get("study_uid") for v in views}
        if len(uids) != 1 or reading.study not in uids:
            raise HTTPException(status_code=422, detail="the views are not all of one DICOM study (or 'study' names "
                                                        "another): an SR can join only the study its sources share")
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = write_study_sr([Path(v["input"]["path"]) for v in views], reading, loaded.metadata,
                                      Path(tmp) / "study_sr.dcm")
            except OsteolensError as exc:  # a header that cannot carry it; server paths stay on the server
                detail = str(exc)
                for v in views:
                    detail = detail.replace(v["input"]["path"], v["image"])
                raise HTTPException(status_code=422, detail=f"no study SR: {detail}") from exc
            content = path.read_bytes()
        log.info("study SR written for %d analyses", len(ids))
        return Response(content=content, media_type="application/dicom",
                        headers={"Content-Disposition": 'attachment; filename="osteolens_study_sr.dcm"'})

    @app.get("/v1/analyses/{analysis_id}", dependencies=[Depends(require_key)])
    def get_analysis(analysis_id: str) -> dict:
        folder = _folder(analysis_id)
        return _body(folder, analysis_id, _stem(folder))

    static = Path(__file__).parent / "static"

    @app.get("/", include_in_schema=False)
    def viewer() -> HTMLResponse:
        return HTMLResponse((static / "index.html").read_text())

    @app.get("/viewer/{name}", include_in_schema=False)
    def viewer_file(name: str) -> FileResponse:
        types = {"viewer.js": "text/javascript", "viewer.css": "text/css"}
        if name not in types:
            raise HTTPException(status_code=404, detail="not found")
        return FileResponse(static / name, media_type=types[name])

    @app.get("/v1/analyses/{analysis_id}/dicom/{kind}", dependencies=[Depends(require_key)])
    def get_dicom(analysis_id: str, kind: str) -> FileResponse:
        folder = _folder(analysis_id)
        path = folder / "dicom" / _stem(folder) / f"{kind}.dcm"
        if kind not in ("seg", "sr", "pr", "sc") or not path.is_file():
            raise HTTPException(status_code=404,
                                detail=f"no DICOM {kind!r} for this analysis (only DICOM inputs get SEG, SR, PR and SC)")
        return FileResponse(path, media_type="application/dicom", filename=f"osteolens_{analysis_id}_{kind}.dcm")

    def _rebuilt(folder: Path):
        """The stored result with its arrays (grey, saliency, mask) back in memory."""
        import numpy as np

        from osteolens.inference.analyze import Analysis
        from osteolens.io.images import read_mask

        stem = _stem(folder)
        result = Analysis.from_json(json.loads((folder / f"{stem}.json").read_text()))
        result.grey = np.load(folder / "layers" / f"{stem}_image.npy").astype(np.float32) / 255.0
        result.saliency = np.load(folder / "layers" / f"{stem}_saliency.npy").astype(np.float32) / 255.0
        result.mask = read_mask(folder / "masks" / f"{stem}.png")
        return result

    def _png_layer(folder: Path, layer: str) -> Path:
        """A PNG layer, rendered from the stored arrays on first request and kept."""
        stem = _stem(folder)
        path = folder / layer_files[layer].format(stem=stem)
        if not path.is_file():
            from osteolens.inference.analyze import render_overlay
            from osteolens.io.images import save_png

            if layer == "overlay":
                save_png(render_overlay(_rebuilt(folder)), path)
            else:
                import numpy as np

                save_png(np.load(path.with_suffix(".npy")), path)
        return path

    @app.get("/v1/analyses/{analysis_id}/report", dependencies=[Depends(require_key)])
    def get_report(analysis_id: str) -> HTMLResponse:
        folder = _folder(analysis_id)
        page = folder / "report.html"
        if not page.is_file():  # written when first asked for, from the stored arrays (read once)
            from osteolens.inference.analyze import render_overlay
            from osteolens.reporting.html import report_thumbnail, write_batch_report

            result = _rebuilt(folder)
            result.thumbnail = report_thumbnail(render_overlay(result))
            write_batch_report([result], loaded, page)
        return HTMLResponse(page.read_text())

    layer_files = {"mask": "masks/{stem}.png", "overlay": "{stem}_overlay.png",
                   "image": "layers/{stem}_image.png", "saliency": "layers/{stem}_saliency.png"}

    @app.get("/v1/analyses/{analysis_id}/{layer}", dependencies=[Depends(require_key)])
    def get_layer(analysis_id: str, layer: str) -> FileResponse:
        """PNG layers: ``mask`` (0/255), ``overlay``, ``image`` (grey input), ``saliency``."""
        folder = _folder(analysis_id)
        if layer not in layer_files:
            raise HTTPException(status_code=404, detail=f"no layer {layer!r}; layers are {', '.join(layer_files)}")
        return FileResponse(_png_layer(folder, layer), media_type="image/png")

    return app


def _body(folder: Path, analysis_id: str, stem: str) -> dict:
    data = json.loads((folder / f"{stem}.json").read_text())
    if data.get("error") and data.get("input"):  # an analysis whose DICOM outputs failed: name the upload, not its path
        data["error"] = data["error"].replace(data["input"]["path"], data["image"])
    for key in ("input", "mask_file", "overlay_file"):  # server paths stay on the server
        data.pop(key, None)
    base = f"/v1/analyses/{analysis_id}"
    links = {k: f"{base}/{k}" for k in ("mask", "overlay", "report", "image", "saliency")}
    if data.get("dicom_files"):
        links.update({f"dicom_{k}": f"{base}/dicom/{k}" for k, v in data["dicom_files"].items() if v})
    data.pop("dicom_files", None)
    return {"id": analysis_id, **data, "links": {"self": base, **links}}


def serve_in_background(app: FastAPI, host: str = "127.0.0.1", port: int = 0, wait_seconds: float = 10.0):
    """Run ``app`` under uvicorn in a daemon thread on a free loopback port (for tests and benchmarks).

    Returns:
        ``(base_url, server)``; set ``server.should_exit = True`` to stop it.
    """
    import uvicorn

    port = port or free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    base = f"http://{host}:{port}"
    if not wait_for_http(base + "/healthz", wait_seconds):
        raise OsteolensError(f"the service did not start on {base} within {wait_seconds} s")
    return base, server


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (for services started by tests and benchmarks)."""
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, wait_seconds: float = 10.0) -> bool:
    """Poll ``url`` until it answers 200; False when ``wait_seconds`` pass first."""
    import httpx

    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    return False
