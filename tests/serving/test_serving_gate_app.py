"""The input gate in `pepx serve` (TestClient): verdicts in the JSON, no class for a rejected upload, DICOM
headers read from the upload, the fields documented in OpenAPI, and the gate's status in health / model."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from fakes.images import make_dicom
from pepx.data import read_image
from pepx.serving import Predictor
from pepx.serving.app import create_app
from pepx.serving.settings import ServeSettings


@pytest.fixture(scope="module")
def served(gated):
    root, split, bundle = gated
    with TestClient(create_app(Predictor(bundle, device="cpu"), ServeSettings())) as client:
        yield client, split, root


def _png(img: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((img * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_rejected_upload_has_no_class_and_a_film_has_one(served):
    client, split, _ = served
    film = read_image(split.loc[split["split"] == "test", "path"].iloc[0])
    files = [("file", ("blank.png", _png(np.zeros((64, 64))), "image/png")),
             ("file", ("noise.png", _png(np.random.default_rng(0).random((64, 64))), "image/png")),
             ("file", ("film.png", _png(film), "image/png"))]
    body = client.post("/v1/predict?cam=true", files=files).json()
    assert body["gate"] == "on"
    blank, noise, ok = body["predictions"]
    for p in (blank, noise):
        assert p["status"] == "ok" and p["gate"] == "rejected" and p["label"] is None
        assert p["label_display"] is None and p["probabilities"] == {} and p["flagged"] == []
        assert "cam" not in p
        assert 0.0 <= p["gate_score"] <= 1.0 and p["gate_reason"]
    assert blank["gate_reason"] == "the image is blank (a single grey level)"
    assert noise["gate_reason"].startswith("does not look like a frontal chest X-ray")
    assert ok["gate"] in ("ok", "unfamiliar") and ok["label"] is not None and "cam" in ok
    assert set(ok) >= {"gate_score", "gate_distance", "gate_reason"}


def test_dicom_upload_header_rejects_a_ct(served, tmp_path):
    client, split, _ = served
    film = read_image(split.loc[split["split"] == "test", "path"].iloc[0])
    path = make_dicom(tmp_path / "ct.dcm", (film * 4095).round())
    ds = pydicom.dcmread(path)
    ds.Modality = "CT"
    ds.save_as(path)
    (p,) = client.post("/v1/predict", files=[("file", ("ct.dcm", path.read_bytes(), "application/dicom"))]
                       ).json()["predictions"]
    assert p["gate"] == "rejected" and p["label"] is None
    assert "modality CT" in p["gate_reason"] and "DICOM Modality CT" in p["gate_reason"]


def test_gate_status_and_openapi(served):
    client, _, _ = served
    assert client.get("/v1/health").json()["gate"] == "on"
    assert client.get("/v1/model").json()["gate"] == "on"
    schema = client.get("/openapi.json").json()
    item = schema["components"]["schemas"]["PredictionOut"]["properties"]
    assert {"gate", "gate_score", "gate_distance", "gate_reason"} <= set(item)
    assert item["gate"]["enum"] == ["ok", "unfamiliar", "rejected", "off"]
    ok = schema["paths"]["/v1/predict"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/PredictResponse")


def test_gate_off_on_request(served):
    _, _, root = served
    predictor = Predictor.from_bundle(root / "gated", device="cpu", gate=False)
    with TestClient(create_app(predictor)) as client:
        (p,) = client.post("/v1/predict", files=[("file", ("b.png", _png(np.zeros((64, 64))), "image/png"))]
                           ).json()["predictions"]
    assert p["gate"] == "off" and p["label"] is not None and p["gate_score"] is None
