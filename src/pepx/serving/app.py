"""The HTTP API and the page: `create_app(predictor, settings)` returns the FastAPI application.

    GET  /                the page (static/index.html; plain HTML/CSS/JS, works offline)
    GET  /v1/health       liveness, the model's id and version, runtime, batching counters
    GET  /v1/model        the model card (Markdown) and config.json
    POST /v1/predict      multipart, one or more `file` fields (PNG, JPEG, DICOM); `?cam=true` adds Grad-CAM
    GET  /docs            OpenAPI (Swagger UI; /openapi.json is the schema)

Every `/v1/` call needs `Authorization: Bearer TOKEN` when `settings.token` is set, checked before the body
is read (`pepx.serving.auth.TokenGate`). Uploads are checked by
`pepx.serving.uploads` (413 / 415 / 422 with the reason), decoded and preprocessed in a bounded thread pool,
and each image goes through the `DynamicBatcher` (503 + Retry-After when its queue is full; 503, and a
failing `/v1/health`, should its inference thread ever stop). Weights are only
ever loaded through `pepx.serving.load_bundle` / `Predictor` (by the caller, see `pepx.serving.server`).

The routes sit on two module-level routers (`api`: /v1/, `pages`: the page and docs) and read what they
need (predictor, settings, batcher, decode pool) from `request.app.state`, which `create_app` fills.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import io
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, File, HTTPException, Query, UploadFile
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from markdown_it import MarkdownIt
from matplotlib import colormaps
from PIL import Image
from starlette.requests import Request
from swagger_ui_bundle import swagger_ui_path

import pepx
from pepx.serving.auth import TokenGate
from pepx.serving.batching import BatcherDown, DynamicBatcher, QueueFullError
from pepx.serving.gate.dicom import read_tags
from pepx.serving.gate.gate import GATE_OFF, GateResult
from pepx.serving.gradcam import Explanation, overlay
from pepx.serving.predictor import Predictor
from pepx.serving.schema import PredictResponse
from pepx.serving.settings import ServeSettings
from pepx.serving.uploads import BodyLimit, Upload, UploadError, decode, read_upload

STATIC = Path(str(resources.files("pepx.serving").joinpath("static")))
NOTICE = "Research use only: not for diagnosis or any clinical decision."


def create_app(predictor: Predictor, settings: ServeSettings | None = None) -> FastAPI:
    """The application serving `predictor` (its batcher and thread pool run while the app's lifespan does).

    Everything a route needs is on `app.state`: `predictor`, `settings`, `batcher`, `card_html` (the card
    rendered once), `started` (time.time() at creation) and, while the app runs, `decode_pool` (the
    `decode_workers` threads)."""
    s = settings or ServeSettings()
    bundle = predictor.bundle
    app = FastAPI(title="pepx", version=pepx.__version__, lifespan=_lifespan, docs_url=None, redoc_url=None,
                  description=f"Chest X-ray classification with {bundle.id} {bundle.version}. {NOTICE}")
    app.add_middleware(BodyLimit, max_bytes=s.max_body_bytes, hint=" (pepx serve --max-upload-mb)")
    if s.token:  # outside the body limit: no byte of a request without the token is read
        app.add_middleware(TokenGate, token=s.token)
    app.state.batcher = DynamicBatcher(predictor.score_tensor, max_batch=s.max_batch,
                                       max_wait_ms=s.max_wait_ms, max_queue=s.max_queue)
    app.state.predictor, app.state.settings = predictor, s
    app.state.card_html = card_html(bundle.card) if bundle.card else ""
    app.state.started = time.time()
    if s.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(s.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.include_router(api, dependencies=[Depends(_Bearer(s.token))] if s.token else [])
    app.include_router(pages)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/docs-static", StaticFiles(directory=swagger_ui_path), name="docs-static")
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI):
    state = app.state
    state.decode_pool = ThreadPoolExecutor(max_workers=state.settings.decode_workers,
                                           thread_name_prefix="pepx-decode")
    state.batcher.start()
    try:
        yield
    finally:
        state.batcher.stop()
        state.decode_pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------- routes
#: The `/v1/` API; `create_app` adds the bearer-token check when the settings carry a token.
api = APIRouter(prefix="/v1")
#: The page, its icon and the offline Swagger UI (not in the OpenAPI schema).
pages = APIRouter(include_in_schema=False)


@api.get("/health", summary="Liveness, model, runtime and batching counters (503 when inference stopped)")
async def health(request: Request) -> Any:
    state = request.app.state
    predictor, batcher = state.predictor, state.batcher
    body = {"status": "ok", "model": _model_id(predictor), "runtime": predictor.runtime,
            "gate": predictor.gate_status, "runtime_choice": state.settings.runtime_info,
            "device": str(predictor.device),
            "batching": batcher.stats(), "uptime_s": round(time.time() - state.started, 1)}
    if batcher.alive:
        return body
    return JSONResponse({**body, "status": "error", "detail": f"inference stopped: {batcher.error!r}"},
                        status_code=503)


@api.get("/model", summary="The model card (Markdown) and config.json")
async def model(request: Request) -> dict[str, Any]:
    state = request.app.state
    predictor, s = state.predictor, state.settings
    bundle = predictor.bundle
    return {**_model_id(predictor), "classes": list(bundle.classes),
            "class_display": list(bundle.display.values()),
            "image_size": bundle.image_size, "runtime": predictor.runtime, "notice": NOTICE,
            "gate": predictor.gate_status,
            "limits": {"max_upload_mb": s.max_upload_mb, "max_files": s.max_files,
                       "accepted": ["image/png", "image/jpeg", "application/dicom"]},
            "card": bundle.card, "card_html": state.card_html, "config": bundle.config}


@api.post("/predict", summary="Classify one or more chest X-rays",
          responses={200: {"model": PredictResponse, "description": "one entry per file; the input gate's "
                           "verdict on each image read"},
                     413: {"description": "request, file or decoded image too large"},
                     415: {"description": "not PNG, JPEG or DICOM (judged by the bytes)"},
                     422: {"description": "empty, truncated or undecodable file; DICOM without pixels"},
                     503: {"description": "inference queue full; see Retry-After"}})
async def predict(request: Request,
                  file: Annotated[list[UploadFile], File(description="PNG, JPEG or DICOM; repeat the field "
                                                                     "for several images")],
                  cam: Annotated[bool, Query(description="add Grad-CAM pictures as PNG data URLs")] = False):
    t0 = time.perf_counter()
    state = request.app.state
    s, predictor = state.settings, state.predictor
    if len(file) > s.max_files:
        raise HTTPException(413, f"{len(file)} files in one request: at most {s.max_files}")
    uploads = []
    for part in file:
        try:
            uploads.append(await read_upload(part, s.max_body_bytes))
        except UploadError as err:
            uploads.append(err)
    work = [_one(state, item, cam) for item in uploads]
    results = await asyncio.gather(*work, return_exceptions=True)
    full = next((r for r in results if isinstance(r, QueueFullError)), None)
    if full is not None:
        raise HTTPException(503, str(full), headers={"Retry-After": str(full.retry_after)})
    down = next((r for r in results if isinstance(r, BatcherDown)), None)
    if down is not None:
        raise HTTPException(503, str(down))
    for r in results:
        if isinstance(r, BaseException):
            raise r
    body = {"model": _model_id(predictor), "runtime": predictor.runtime, "gate": predictor.gate_status,
            "notice": NOTICE, "predictions": results, "timing_ms": {"total": _ms(t0)}}
    if any(r["status"] == "ok" for r in results):
        return body
    first = results[0]
    detail = "; ".join(f"{r['filename']}: {r['error']}" for r in results)
    return JSONResponse({"detail": detail, **body}, status_code=first["code"])


async def _one(state: Any, item: Upload | UploadError, cam: bool) -> dict[str, Any]:
    """One upload's entry of `predictions`: decoded in the decode pool, scored through the batcher."""
    if isinstance(item, UploadError):
        return _error(item)
    predictor, s, pool = state.predictor, state.settings, state.decode_pool
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    try:
        x, image, kind, tags = await loop.run_in_executor(pool, _prepare, predictor, item, s.max_pixels)
    except UploadError as err:
        return _error(err)
    decode_ms = _ms(t0)
    res = await asyncio.wrap_future(state.batcher.submit(x))
    gate = (res.extra or GATE_OFF).with_dicom(tags)
    out = _prediction_json(predictor, item.filename, res.probabilities, gate)
    out.update(media_type=kind, batch_size=res.batch_size,
               timing_ms={"decode": decode_ms, "queue": round(res.queue_ms, 2),
                          "inference": round(res.inference_ms, 2)})
    if cam and out["label"] is not None:  # a rejected image has no class to explain
        t1 = time.perf_counter()
        index = int(np.argmax(res.probabilities))
        out["cam"] = await loop.run_in_executor(pool, _cam_pictures, predictor, image, index, s.cam_size)
        out["timing_ms"]["cam"] = _ms(t1)
    return out


@pages.get("/")
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


@pages.get("/favicon.ico")
async def favicon() -> FileResponse:
    return FileResponse(STATIC / "favicon.ico", media_type="image/x-icon")


@pages.get("/docs")
async def docs(request: Request) -> HTMLResponse:  # Swagger UI from the swagger-ui-bundle package: offline
    return get_swagger_ui_html(openapi_url=request.app.openapi_url or "/openapi.json", title="pepx API",
                               swagger_js_url="/docs-static/swagger-ui-bundle.js",
                               swagger_css_url="/docs-static/swagger-ui.css",
                               swagger_favicon_url="/docs-static/favicon-32x32.png")


# ---------------------------------------------------------------------- pieces
class _Bearer(HTTPBearer):
    """Dependency: the request must carry `Authorization: Bearer <token>` (compared in constant time)."""

    def __init__(self, token: str) -> None:
        super().__init__(auto_error=False, description="pepx serve --token / $PEPX_TOKEN")
        self.token = token.encode()

    async def __call__(self, request: Request) -> None:
        credentials = await super().__call__(request)
        given = credentials.credentials.encode() if credentials is not None else b""
        if not hmac.compare_digest(given, self.token):
            raise HTTPException(401, "missing or wrong bearer token (Authorization: Bearer TOKEN)",
                                headers={"WWW-Authenticate": "Bearer"})


def card_html(card: str) -> str:
    """The card (Markdown) as an HTML fragment for the page: CommonMark with tables (markdown-it-py). Raw HTML
    in the card is escaped, not passed through, and links other than http(s) / relative are dropped."""
    return MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"]).render(card)


def _model_id(predictor: Predictor) -> dict[str, str]:
    return {"id": predictor.bundle.id, "version": predictor.bundle.version}


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 2)


def _error(err: UploadError) -> dict[str, Any]:
    return {"filename": err.filename, "status": "error", "code": err.status, "error": err.reason}


def _prepare(predictor: Predictor, upload: Upload, max_pixels: int):
    image, kind = decode(upload, max_pixels)
    tags = read_tags(upload.data) if kind == "application/dicom" and predictor.gate is not None else {}
    try:
        return predictor.preprocess(image), image, kind, tags
    except ValueError as err:
        raise UploadError(422, upload.filename, str(err)) from None


def _prediction_json(predictor: Predictor, filename: str, probs: np.ndarray,
                     gate: GateResult = GATE_OFF) -> dict[str, Any]:
    """`schema.PredictionOut`'s fields (less media type and timing), from Predictor's own label,
    operating-point flags and gate handling."""
    pred = predictor.prediction(filename, probs, gate)
    display = predictor.bundle.display
    row = pred.to_row()
    return {"filename": filename, "status": "ok", "label": pred.label,
            "label_display": display.get(pred.label) if pred.label else None,
            "probabilities": pred.probabilities, "flagged": list(pred.flagged),
            **{k: row[k] for k in ("gate", "gate_score", "gate_distance", "gate_reason", "caveat")}}


def _cam_pictures(predictor: Predictor, image: np.ndarray, class_index: int, size: int) -> dict[str, Any]:
    """Grad-CAM of `class_index` as three PNG data URLs at most `size` px: `overlay` (the map blended in at
    alpha 0.5), `film` (the radiograph, grey) and `heatmap` (the map's colours, transparent where cold: laid
    over `film` at opacity a it gives exactly the overlay at alpha a)."""
    exp: Explanation = predictor.explain(image, class_index=class_index)
    h, w = exp.image.shape
    scale = min(1.0, size / max(h, w))
    shape = (max(1, round(w * scale)), max(1, round(h * scale)))
    film, heat = (np.asarray(Image.fromarray(a.astype(np.float32), mode="F").resize(shape, Image.BILINEAR))
                  .clip(0, 1) for a in (exp.image, exp.map))
    rgba = colormaps["jet"](heat)
    rgba[..., 3] = heat
    return {"class": exp.class_name, "class_display": predictor.bundle.display.get(exp.class_name),
            "class_index": exp.class_index, "layer": exp.layer,
            "cropped": exp.seen is not None and exp.seen != (0, 0, h, w),
            "overlay": _png_url(overlay(film, heat, alpha=0.5)),
            "film": _png_url(Image.fromarray((film * 255 + 0.5).astype(np.uint8), mode="L")),
            "heatmap": _png_url(Image.fromarray((rgba * 255 + 0.5).astype(np.uint8), mode="RGBA"))}


def _png_url(picture: Image.Image) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


__all__ = ["NOTICE", "api", "card_html", "create_app", "pages"]
