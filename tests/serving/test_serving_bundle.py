"""Bundles: save / load round trip, checksum refusal, malformed folders, the lazy `pepx.load_bundle`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import pepx
from fakes.bundles import SIZE, make_bundle
from pepx.errors import BundleError
from pepx.serving import Predictor, load_bundle
from pepx.serving.bundle import write_bundle


def test_round_trip_fp32_is_bit_identical_to_the_model(tmp_path):
    model, bundle = make_bundle(tmp_path / "b", half=False)
    assert (bundle.id, bundle.version, bundle.classes) == ("tiny", "0.0.1", pepx.CLASSES)
    assert bundle.image_size == SIZE
    assert bundle.card == "# tiny\n" and "float16" not in bundle.config["weights"]["dtypes"]
    x = torch.randn(5, 1, SIZE, SIZE)
    with torch.no_grad():
        expected = torch.softmax(model(x) / 1.7, dim=1).numpy()
    got = Predictor(load_bundle(tmp_path / "b"), device="cpu").predict_tensor(x)
    assert np.array_equal(got, expected)


def test_round_trip_fp16_resave_is_bit_identical(tmp_path):
    model, bundle = make_bundle(tmp_path / "a", half=True)
    again = load_bundle(tmp_path / "a").save(tmp_path / "b")
    weights = "model.safetensors"
    assert (tmp_path / "a" / weights).read_bytes() == (tmp_path / "b" / weights).read_bytes()
    x = torch.randn(4, 1, SIZE, SIZE)
    p1 = Predictor(bundle, device="cpu").predict_tensor(x)
    p2 = Predictor(again, device="cpu").predict_tensor(x)
    assert np.array_equal(p1, p2)
    with torch.no_grad():
        fp32 = torch.softmax(model(x) / 1.7, dim=1).numpy()
    assert 0 < np.abs(p1 - fp32).max() < 2e-2  # fp16 storage rounds the weights, a little
    assert {"float16", "float32"} <= set(bundle.config["weights"]["dtypes"])
    half = (tmp_path / "a" / "model.safetensors").stat().st_size
    full = write_bundle(model, tmp_path / "c", bundle.config, half=False).config["weights"]["bytes"]
    assert half < 0.6 * full


def test_tampered_weights_are_refused(tmp_path):
    make_bundle(tmp_path / "b")
    weights = tmp_path / "b" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model.safetensors fails its checksum"):
        load_bundle(tmp_path / "b")
    with pytest.raises(BundleError, match=str(tmp_path / "b")):
        Predictor.from_bundle(tmp_path / "b")


def test_malformed_bundles_name_the_folder_and_reason(tmp_path):
    make_bundle(tmp_path / "b")
    config_file = tmp_path / "b" / "config.json"
    good = json.loads(config_file.read_text())
    with pytest.raises(BundleError, match="no such bundle folder"):
        load_bundle(tmp_path / "nowhere")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("model: pepx_resnet\n")
    with pytest.raises(BundleError, match="is a run folder, not a bundle"):
        load_bundle(tmp_path / "run")
    config_file.write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(tmp_path / "b")
    config_file.write_text(json.dumps({k: v for k, v in good.items() if k != "classes"}))
    with pytest.raises(BundleError, match="lacks classes"):
        load_bundle(tmp_path / "b")
    config_file.write_text(json.dumps({**good, "calibration": {"temperature": -1}}))
    with pytest.raises(BundleError, match=r"calibration.temperature: Input should be greater than or"):
        load_bundle(tmp_path / "b")
    config_file.write_text(json.dumps({**good, "architecture": {"name": "resnet18", "kwargs": {}}}))
    with pytest.raises(BundleError, match=r"weights do not fit resnet18"):
        Predictor.from_bundle(tmp_path / "b")
    (tmp_path / "b" / "model.safetensors").unlink()
    config_file.write_text(json.dumps(good))
    with pytest.raises(BundleError, match="weights file model.safetensors is missing"):
        load_bundle(tmp_path / "b")


def test_pepx_load_bundle_is_lazy_and_inference_never_imports_lightning(tmp_path):
    make_bundle(tmp_path / "b")
    code = (
        "import sys, numpy as np, pepx\n"
        "assert 'pepx.serving' not in sys.modules and 'torch' not in sys.modules\n"
        f"b = pepx.load_bundle({str(tmp_path / 'b')!r})\n"
        "p = pepx.Predictor(b, device='cpu')\n"
        "img = np.random.default_rng(0).random((70, 50), dtype=np.float32)\n"
        "assert p.predict([img])[0].status == 'ok'\n"
        "p.explain(img)\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning', 'monai')]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
