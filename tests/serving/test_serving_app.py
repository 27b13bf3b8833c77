"""pepx serve's API contract (TestClient): endpoints, bad inputs, token, CORS, the same numbers as predict."""

from __future__ import annotations

import base64
import io
import os
import re

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from fakes.bundles import make_bundle
from fakes.images import bomb_png, make_dicom, radiograph, ramp, save_png
from pepx import CLASSES
from pepx.cli import main
from pepx.errors import ConfigError
from pepx.serving import Predictor, load_bundle
from pepx.serving.app import NOTICE, create_app
from pepx.serving.settings import ServeSettings


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve") / "bundle"
    make_bundle(folder, operating_points={"COVID-19": {"threshold": 0.0}},
                caveats={c: f"the card on {c} calls" for c in CLASSES})
    return folder


@pytest.fixture(scope="module")
def predictor(bundle_dir):
    return Predictor.from_bundle(bundle_dir, runtime="torch", device="cpu")


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor, ServeSettings(max_upload_mb=2, max_files=4))) as c:
        yield c


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """The same kinds of file a user drops: 8-bit PNG, JPEG, 12-bit DICOM."""
    d = tmp_path_factory.mktemp("images")
    png = save_png(d / "film.png", radiograph(120, 100, seed=1))
    Image.fromarray((radiograph(90, 110, seed=2) * 255).astype(np.uint8)).save(d / "film.jpg", quality=90)
    dcm = make_dicom(d / "film.dcm", (radiograph(96, 96, seed=3) * 4095).round())
    return {"png": png, "jpg": d / "film.jpg", "dcm": dcm}


def post(client, *files, cam=False, headers=None):
    parts = [("file", (name, data, "application/octet-stream")) for name, data in files]
    return client.post(f"/v1/predict{'?cam=true' if cam else ''}", files=parts, headers=headers or {})


# --------------------------------------------------------------------------- endpoints
def test_health_model_page_docs(client, predictor):
    health = client.get("/v1/health").json()
    assert health["status"] == "ok" and health["model"] == {"id": "tiny", "version": "0.0.1"}
    assert health["runtime"] == "torch" and health["batching"]["max_batch"] == 16
    model = client.get("/v1/model").json()
    assert model["card"] == "# tiny\n" and model["classes"] == list(predictor.classes)
    assert model["card_html"] == "<h1>tiny</h1>\n"  # the page shows the card as HTML (issue 18 item 3)
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO file
    assert model["config"]["weights"]["sha256"] == predictor.bundle.sha256 and model["image_size"] == 48
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "not for diagnosis" in page.text and "/static/app.js" in page.text
    texts = [page.text]
    for asset, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        r = client.get(f"/static/{asset}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
        texts.append(r.text)
    assert not any("http://" in t or "https://" in t for t in texts)  # nothing from outside: works offline
    docs = client.get("/docs")
    assert docs.status_code == 200
    # Swagger UI comes from the package, not a CDN: every script and style the page loads is served here
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css|png))"', docs.text)
    assert assets and all(a.startswith("/docs-static/") for a in assets), assets
    assert all(client.get(a).status_code == 200 for a in assets)
    assert "http://" not in docs.text and "https://" not in docs.text
    schema = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/health", "/v1/model"} <= set(schema["paths"])


def test_predict_equals_predictor_and_pepx_predict(client, predictor, images, tmp_path):
    """One file per request: bit-identical to Predictor.predict and to `pepx predict`'s CSV."""
    out = tmp_path / "rows.csv"
    paths = [str(p) for p in images.values()]
    assert main(["predict", "--model", str(predictor.bundle.path), *paths, "--batch-size", "1", "--out",
                 str(out)]) == 0
    rows = pd.read_csv(out, float_precision="round_trip").set_index("source")
    for kind, path in images.items():
        r = post(client, (path.name, path.read_bytes()))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == {"id": "tiny", "version": "0.0.1"} and body["notice"] == NOTICE
        (got,) = body["predictions"]
        (expected,) = predictor.predict([path], progress=False)
        assert got["status"] == "ok" and got["filename"] == path.name and got["batch_size"] == 1
        assert got["probabilities"] == expected.probabilities, kind
        assert got["label"] == expected.label and got["flagged"] == ["COVID-19"]  # threshold 0 flags
        # the card's caveat of the predicted class, in the API and in the CSV (issue 15 item 5)
        assert got["caveat"] == expected.caveat == f"the card on {got['label']} calls"
        assert rows.loc[str(path), "caveat"] == got["caveat"]
        # the CSV names classes as people read them: the API's label_display (its keys stay the classes)
        names = predictor.bundle.display
        cli = {c: rows.loc[str(path), f"prob_{names[c]}"] for c in predictor.classes}
        assert got["probabilities"] == cli and rows.loc[str(path), "label"] == got["label_display"]
        media = {"png": "image/png", "jpg": "image/jpeg", "dcm": "application/dicom"}
        assert got["media_type"] == media[kind]
        assert set(got["timing_ms"]) == {"decode", "queue", "inference"} and body["timing_ms"]["total"] > 0


def test_several_files_keep_order_and_good_ones_survive_bad(client, predictor, images):
    names = ["film.dcm", "junk.png", "film.png"]
    r = post(client, (names[0], images["dcm"].read_bytes()), (names[1], b"hello, not an image"),
             (names[2], images["png"].read_bytes()))
    assert r.status_code == 200
    preds = r.json()["predictions"]
    assert [p["filename"] for p in preds] == names and [p["status"] for p in preds] == ["ok", "error", "ok"]
    assert preds[1]["code"] == 415
    expected = predictor.predict([images["dcm"], images["png"]], progress=False)
    for got, want in zip((preds[0], preds[2]), expected, strict=True):  # batched with each other: 1e-6
        assert max(abs(got["probabilities"][c] - want.probabilities[c]) for c in predictor.classes) < 1e-6
    too_many = post(client, *[("a.png", images["png"].read_bytes())] * 5)
    assert too_many.status_code == 413 and "at most 4" in too_many.json()["detail"]


def test_cam_pictures_compose_to_the_overlay(client, images):
    r = post(client, ("film.png", images["png"].read_bytes()), cam=True)
    (pred,) = r.json()["predictions"]
    cam = pred["cam"]
    assert cam["class"] == pred["label"] and cam["layer"] == "layer4" and pred["timing_ms"]["cam"] > 0
    assert cam["class_display"] == pred["label_display"]  # the caption's name is the page's
    assert cam["cropped"] is True  # 120 x 100: the network saw a centred square; the page says so
    (square,) = post(client, ("film.dcm", images["dcm"].read_bytes()), cam=True).json()["predictions"]
    assert square["cam"]["cropped"] is False  # 96 x 96: all of it
    pictures = {k: Image.open(io.BytesIO(base64.b64decode(cam[k].split(",", 1)[1])))
                for k in ("overlay", "film", "heatmap")}
    assert all(cam[k].startswith("data:image/png;base64,") for k in pictures)
    assert pictures["film"].size == pictures["heatmap"].size == pictures["overlay"].size == (100, 120)
    assert (pictures["film"].mode, pictures["heatmap"].mode) == ("L", "RGBA")
    # the page lays the heat map over the film at opacity a: at a = 0.5 that is the overlay, to rounding
    film = np.asarray(pictures["film"], dtype=np.float32)[..., None] / 255
    heat = np.asarray(pictures["heatmap"], dtype=np.float32) / 255
    w = 0.5 * heat[..., 3:]
    composed = (1 - w) * film + w * heat[..., :3]
    overlay = np.asarray(pictures["overlay"], dtype=np.float32) / 255
    assert np.abs(composed - overlay).max() < 3 / 255 and heat[..., 3].max() > 0.9


# --------------------------------------------------------------------------- bad input: never a 5xx
def _truncated_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray((radiograph(64, 64) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()[:300]


def _dicom_without_pixels(tmp_path) -> bytes:
    return make_dicom(tmp_path / "n.dcm", ramp(top=4095), pixels=False).read_bytes()


@pytest.mark.parametrize("name, make, status, words", [
    ("cut.png", lambda tmp: _truncated_png(), 422, "truncated"),
    ("zero.png", lambda tmp: b"", 422, "empty"),
    ("notes.png", lambda tmp: b"these are my notes, renamed to .png\n" * 20, 415, "not a PNG, JPEG or DICOM"),
    ("bomb.png", lambda tmp: bomb_png(20000, 20000), 413, "pixels"),
    ("huge.png", lambda tmp: bomb_png(8000, 8000), 413, "exceeds the limit of 60000000"),  # below Pillow's
    ("empty.dcm", _dicom_without_pixels, 422, "no pixel data"),
    ("big.png", lambda tmp: b"\x89PNG\r\n\x1a\n" + bytes(2_100_000), 413, "upload limit of 2 MB"),
])
def test_bad_input_statuses(client, tmp_path, name, make, status, words):
    r = post(client, (name, make(tmp_path)))
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    if "upload limit" not in words:  # a refused body has no per-file rows
        (row,) = r.json()["predictions"]
        assert row == {"filename": name, "status": "error", "code": status, "error": row["error"]}


def test_body_limit_counts_bytes_not_the_header(client):
    """A streamed body (no Content-Length) or a lying Content-Length is cut off at the limit too."""
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n\x89PNG\r\n\x1a\n'

    def body():
        yield head
        for _ in range(25):
            yield bytes(100_000)
        yield b"\r\n--b--\r\n"

    for extra in ({}, {"content-length": "1000"}):
        r = client.post("/v1/predict", content=body(),
                        headers={"content-type": "multipart/form-data; boundary=b", **extra})
        assert r.status_code == 413 and "request body is over the upload limit" in r.json()["detail"]
    # a declared oversize body is refused from its header, before a byte of it is read
    small = head + b"\r\n--b--\r\n"
    r = client.post("/v1/predict", content=small, headers={"content-type": "multipart/form-data; boundary=b",
                                                            "content-length": str(10**9)})
    assert r.status_code == 413 and "request body is over the upload limit" in r.json()["detail"]
    assert client.get("/v1/health").status_code == 200  # and the server goes on


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files through /proc")
def test_uploads_leave_no_open_or_named_files(client, tmp_path):
    """Parts over 1 MB spool to an anonymous temp file; it is closed (and so gone) once the request ends."""
    big = Image.fromarray((np.random.default_rng(0).random((1000, 1000)) * 255).astype(np.uint8))
    buf = io.BytesIO()
    big.save(buf, format="PNG", compress_level=0)
    assert 1_000_000 < len(buf.getvalue()) < 2_000_000
    post(client, ("warm.png", buf.getvalue()))
    before = set(os.listdir("/proc/self/fd"))
    r = post(client, ("big.png", buf.getvalue()))
    assert r.status_code == 200
    leaked = [os.readlink(f"/proc/self/fd/{fd}") for fd in set(os.listdir("/proc/self/fd")) - before
              if os.path.exists(f"/proc/self/fd/{fd}")]
    assert not [p for p in leaked if "/" in p and not p.startswith(("/dev", "/proc"))], leaked


# --------------------------------------------------------------------------- token and CORS
def test_token_guards_every_v1_call_but_not_the_page(predictor, images):
    app = create_app(predictor, ServeSettings(token="s3cret"))
    good = {"Authorization": "Bearer s3cret"}
    with TestClient(app) as c:
        for path in ("/v1/health", "/v1/model"):
            assert c.get(path).status_code == 401
            assert c.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert c.get(path, headers=good).status_code == 200
        r = post(c, ("film.png", images["png"].read_bytes()))
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert post(c, ("film.png", images["png"].read_bytes()), headers=good).status_code == 200
        assert c.get("/").status_code == 200 and c.get("/static/app.js").status_code == 200


def test_no_cors_unless_asked(predictor, client):
    origin = {"Origin": "https://viewer.example"}
    assert "access-control-allow-origin" not in client.get("/v1/health", headers=origin).headers
    with TestClient(create_app(predictor, ServeSettings(cors_origins=("https://viewer.example",)))) as c:
        r = c.get("/v1/health", headers=origin)
        assert r.headers["access-control-allow-origin"] == "https://viewer.example"
        other = c.get("/v1/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_card_html_renders_tables_and_escapes_html():
    from pepx.serving.app import card_html

    html = card_html("## Metrics\n\n| metric | value |\n| --- | --- |\n| accuracy | 0.9 |\n\n"
                     "<script>alert(1)</script> [x](javascript:alert(1)) **bold**\n")
    assert "<h2>Metrics</h2>" in html and "<table>" in html and "<td>accuracy</td>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html and 'href="javascript' not in html
    assert "<strong>bold</strong>" in html


# --------------------------------------------------------------------------- routes and settings (issue 19)
def test_two_apps_in_one_process_each_serve_their_own_predictor(client, predictor, tmp_path, images):
    """The routes are module-level and read `request.app.state`: a second app with another bundle and
    token answers with its own model, limits and token, and leaves the first untouched."""
    make_bundle(tmp_path / "other", seed=1)
    renamed = load_bundle(tmp_path / "other").with_changes(config={"id": "other-bundle"})
    other = Predictor(renamed, runtime="torch", device="cpu")
    with TestClient(create_app(other, ServeSettings(token="t2", max_files=1))) as c2:
        auth = {"Authorization": "Bearer t2"}
        assert c2.get("/v1/model", headers=auth).json()["id"] == "other-bundle"
        assert c2.get("/v1/model").status_code == 401
        data = images["png"].read_bytes()
        assert post(c2, ("a.png", data), ("b.png", data), headers=auth).status_code == 413  # max_files=1
        one = post(c2, ("a.png", data), headers=auth).json()
        assert one["model"]["id"] == "other-bundle" and one["predictions"][0]["status"] == "ok"
    first = client.get("/v1/model").json()
    assert first["id"] == predictor.bundle.id != "other-bundle" and first["limits"]["max_files"] == 4


def test_predictor_prediction_is_what_the_api_answers(client, predictor, images):
    """`Predictor.prediction` (public): the label, flags and caveat of one row of probabilities."""
    probs = np.array([0.2, 0.3, 0.5], dtype=np.float32)
    pred = predictor.prediction("x.png", probs)
    assert pred.label == "COVID-19" and pred.flagged == ("COVID-19",)
    assert pred.caveat == "the card on COVID-19 calls" and pred.probabilities["normal"] == pytest.approx(0.2)
    served = post(client, ("film.png", images["png"].read_bytes())).json()["predictions"][0]
    again = predictor.prediction("film.png", np.array([served["probabilities"][c] for c in CLASSES]))
    assert served["label"] == again.label and served["caveat"] == again.caveat


@pytest.mark.parametrize("values, message", [
    ({"decode_workers": 100_000}, "--decode-workers 100000: must be a number in [1, 64]"),
    ({"max_wait_ms": float("inf")}, "--max-wait-ms inf: must be a number in [0, 10000]"),
    ({"max_batch": True}, "--max-batch True: must be a number in [1, 1024]"),
    ({"max_batch": 2.5}, "--max-batch 2.5: must be a number in [1, 1024]"),
    ({"workers": 4}, "ServeSettings: unknown setting 'workers' (did you mean 'decode_workers'?)"),
    ({"max_upload": 4}, "ServeSettings: unknown setting 'max_upload' (did you mean 'max_upload_mb'?)"),
], ids=["range", "inf", "bool", "float-for-int", "old-name", "typo"])
def test_serve_settings_refuse_in_one_line(values, message):
    with pytest.raises(ConfigError) as err:
        ServeSettings(**values)
    assert str(err.value) == message
    assert ServeSettings(max_wait_ms=3).max_wait_ms == 3.0 and ServeSettings().decode_workers == 2
