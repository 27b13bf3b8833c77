"""Hostile probe, part 3 (issue 17): `pepx serve` - numeric flags, a busy port, a bad host, a bundle that
leaks a file, the bearer token checked before the body is read, a dead batching thread, damaged DICOM and
DICOM bombs as uploads. CLI cases go through `hostile_kit.run_case`; app cases through Starlette's TestClient
or the raw ASGI interface."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import tracemalloc

import pytest
from fastapi.testclient import TestClient
from hostile_kit import Case, fail, run_case
from hostile_make import bundle_variant, damaged_dicoms, deflated_dicom, encapsulated_bomb, relink

from fakes.bundles import make_bundle
from pepx.serving import Predictor
from pepx.serving.app import create_app
from pepx.serving.settings import ServeSettings

SERVE = ["serve", "--model", "{ws}/bundle", "--port"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("hostile_serve")
    make_bundle(root / "bundle")
    (root / "secret.txt").write_text("not for the web\n")
    bundle_variant(root / "bundle", root / "readme_link", relink("README.md", str(root / "secret.txt")))
    dicoms = damaged_dicoms(root / "dicom")
    (root / "bomb").mkdir()
    deflated_dicom(root / "bomb" / "deflate.dcm", 9000, 9000)
    encapsulated_bomb(root / "bomb" / "frames.dcm", 4096, 4096, 100_000)
    deflated_dicom(root / "bomb" / "fat.dcm", 64, 64, pixel_bytes=300_000_000)
    assert dicoms["good"].is_file()
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CASES = [
    Case("port-above-65535", [*SERVE, "70000"], message="--port"),
    Case("max-upload-inf", [*SERVE, "{port}", "--max-upload-mb", "inf"], message="--max-upload-mb"),
    Case("max-upload-huge", [*SERVE, "{port}", "--max-upload-mb", "1e12"], message="--max-upload-mb"),
    Case("max-wait-inf", [*SERVE, "{port}", "--max-wait-ms", "inf"], message="--max-wait-ms"),
    Case("max-wait-nan", [*SERVE, "{port}", "--max-wait-ms", "nan"], message="--max-wait-ms"),
    Case("max-batch-huge", [*SERVE, "{port}", "--max-batch", "10000000"], message="--max-batch"),
    Case("max-queue-huge", [*SERVE, "{port}", "--max-queue", "1000000000"], message="--max-queue"),
    Case("decode-workers-huge", [*SERVE, "{port}", "--decode-workers", "100000"],
         message="--decode-workers 100000: must be a number in [1, 64]"),
    Case("host-not-a-name", [*SERVE, "{port}", "--host", "no such host!"], message="--host"),
    Case("host-not-on-this-machine", [*SERVE, "{port}", "--host", "192.0.2.1"], message="--host 192.0.2.1"),
    Case("bundle-readme-symlink", ["serve", "--model", "{ws}/readme_link", "--port", "{port}"],
         message="README.md", security=True),
    Case("device-unknown", [*SERVE, "{port}", "--device", "tpu"], message="--device 'tpu'"),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_hostile_serve_flag(ws, capsys, monkeypatch, case):
    monkeypatch.delenv("PEPX_DEBUG", raising=False)
    case.argv = [a.replace("{port}", str(free_port())) for a in case.argv]
    case.timeout = 20
    run_case(case, ws, capsys)


def test_a_port_in_use_is_one_line(ws, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run_case(Case("port-in-use", [*SERVE, str(port)], message="already in use", timeout=20), ws, capsys)


# --------------------------------------------------------------------------- the app
@pytest.fixture(scope="module")
def predictor(ws):
    return Predictor.from_bundle(ws / "bundle", runtime="torch", device="cpu")


def _asgi(app, headers: list[tuple[bytes, bytes]]) -> tuple[int | None, int]:
    """POST /v1/predict straight through ASGI; (status, times the app asked for the body)."""
    asked, sent = [0], {}

    async def receive():
        asked[0] += 1
        await asyncio.sleep(0)
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    async def send(message):
        if message["type"] == "http.response.start":
            sent["status"] = message["status"]

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/predict", "raw_path": b"/v1/predict", "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
             "headers": [(b"content-type", b"multipart/form-data; boundary=xyz"),
                         (b"content-length", b"1000000"), *headers]}

    async def call():
        await asyncio.wait_for(app(scope, receive, send), 10)

    try:
        asyncio.run(call())
    except TimeoutError:
        pass
    return sent.get("status"), asked[0]


@pytest.mark.parametrize("headers", [[], [(b"authorization", b"Bearer wrong")]], ids=["none", "wrong"])
def test_the_token_is_checked_before_the_body_is_read(predictor, headers):
    app = create_app(predictor, ServeSettings(token="s3cret", max_upload_mb=2))
    status, asked = _asgi(app, headers)
    if status != 401 or asked:
        fail("security", f"status {status}; the app read {asked} body chunks before refusing")


def _png(ws) -> bytes:
    from hostile_make import film

    return film(ws / "upload.png").read_bytes()


def _timed(call, seconds: float = 20.0):
    """`call()` in a daemon thread: its result, or a [hang] failure after `seconds`."""
    result: dict[str, object] = {}
    t = threading.Thread(target=lambda: result.setdefault("r", call()), daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        fail("hang", "the request is still waiting for a dead inference thread")
    return result["r"]


def test_a_dead_batching_thread_fails_health_and_answers_503(ws, predictor):
    with TestClient(create_app(predictor, ServeSettings()), raise_server_exceptions=False) as client:

        def broken(batch):
            raise SystemError("the inference thread died")

        batcher = client.app.state.batcher
        batcher._forward = broken  # what any bug in the loop would do
        futures, submit = [], batcher.submit
        batcher.submit = lambda x: futures.append(submit(x)) or futures[-1]
        files = [("file", ("a.png", _png(ws), "image/png"))]
        try:
            first = _timed(lambda: client.post("/v1/predict", files=files).status_code)
            health = _timed(lambda: client.get("/v1/health").status_code)
            again = _timed(lambda: client.post("/v1/predict", files=files).status_code)
        finally:  # let a request still waiting end, so that the client can close
            for f in futures:
                if not f.done():
                    f.set_exception(RuntimeError("ended by the test"))
        if (first, health, again) != (503, 503, 503):
            fail("wrong", f"request {first}, health {health}, next request {again}")


@pytest.fixture(scope="module")
def client(predictor):
    app = create_app(predictor, ServeSettings(max_upload_mb=8))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("name", ["empty_voi", "voi_no_descriptor", "window_text", "slope_text"])
def test_damaged_dicom_with_pixels_is_read_never_a_500(ws, client, name):
    path = ws / "dicom" / f"{name}.dcm"
    r = client.post("/v1/predict", files=[("file", (path.name, path.read_bytes(), "application/dicom"))])
    if r.status_code >= 500:
        fail("traceback", f"{r.status_code}: {r.text[:300]}")
    if r.status_code != 200 or r.json()["predictions"][0]["status"] != "ok":
        fail("wrong", f"{r.status_code}: {r.text[:300]}")


@pytest.mark.parametrize("name", ["deflate", "frames", "fat"])
def test_dicom_bombs_are_413_before_decompression(ws, client, name):
    data = (ws / "bomb" / f"{name}.dcm").read_bytes()
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        r = client.post("/v1/predict", files=[("file", (f"{name}.dcm", data, "application/dicom"))])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if r.status_code >= 500:
        fail("traceback", f"{r.status_code}: {r.text[:300]}")
    if peak > 64e6:
        fail("security", f"decoding took {peak / 1e6:.0f} MB before the refusal "
                         f"({time.perf_counter() - t0:.1f} s)")
    if r.status_code != 413 or "decompression bomb" not in r.text:
        fail("wrong", f"{r.status_code}: {r.text[:300]}")


def test_a_bomb_next_to_a_good_file_leaves_the_good_one(ws, client):
    good = ws / "dicom" / "good.dcm"
    files = [("file", ("good.dcm", good.read_bytes(), "application/dicom")),
             ("file", ("deflate.dcm", (ws / "bomb" / "deflate.dcm").read_bytes(), "application/dicom"))]
    r = client.post("/v1/predict", files=files)
    statuses = [p["status"] for p in r.json().get("predictions", [])] if r.status_code == 200 else []
    if statuses != ["ok", "error"]:
        fail("wrong", f"{r.status_code}: {r.text[:300]}")
