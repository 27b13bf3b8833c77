"""ResNet18's torchvision compatibility, pretrained loading, jit.trace and ONNX export of every model."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from pepx.models import create_model

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT.parent / "shared" / "reference"
SEEDED = REFERENCE / "torchvision_resnet18_seeded.safetensors"
MODELS = ["pepx_resnet", "resnet18", "covidnet"]

needs_reference = pytest.mark.skipif(not SEEDED.exists(), reason="../shared/reference is absent")


@pytest.fixture(scope="module")
def seeded():
    from safetensors.torch import load_file

    return load_file(str(SEEDED))


@needs_reference
def test_state_dict_matches_torchvision_shapes():
    import json

    ref = json.loads((REFERENCE / "torchvision_resnet18.json").read_text())
    model = create_model("resnet18", num_classes=1000, in_chans=3)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert shapes == ref["state_dict_shapes"]
    assert sum(p.numel() for p in model.parameters()) == ref["parameters"]


@needs_reference
def test_torchvision_reference_logits_reproduced(seeded):
    model = create_model("resnet18", num_classes=1000, in_chans=3, pretrained=SEEDED).eval()
    with torch.no_grad():
        logits = model(seeded["__input__"])
    assert (logits - seeded["__logits__"]).abs().max().item() < 1e-4


@needs_reference
def test_grey_input_sums_rgb_kernels_and_new_head(seeded, tmp_path):
    grey = create_model("resnet18", num_classes=1000, in_chans=1, pretrained=SEEDED).eval()
    torch.testing.assert_close(grey.conv1.weight, seeded["conv1.weight"].sum(1, keepdim=True))
    x = seeded["__input__"][:, :1]
    rgb = create_model("resnet18", num_classes=1000, in_chans=3, pretrained=SEEDED).eval()
    with torch.no_grad():  # a grey image is R = G = B, so the summed kernel gives the same logits
        torch.testing.assert_close(grey(x), rgb(x.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-4)
    # num_classes != 1000: the backbone loads, the classifier is new
    torch.save({k: v for k, v in seeded.items() if not k.startswith("__")}, tmp_path / "r18.pth")
    three = create_model("resnet18", num_classes=3, pretrained=tmp_path / "r18.pth")
    assert three.fc.weight.shape == (3, 512)
    torch.testing.assert_close(three.layer4[1].conv2.weight, seeded["layer4.1.conv2.weight"])


@pytest.mark.parametrize("name", ["pepx_resnet", "covidnet"])
def test_own_weights_round_trip(name, tmp_path):
    from safetensors.torch import save_file

    model = create_model(name, width=0.25).eval()
    save_file(model.state_dict(), str(tmp_path / "m.safetensors"))
    again = create_model(name, width=0.25, pretrained=tmp_path / "m.safetensors").eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))


@pytest.mark.parametrize("name", MODELS)
def test_jit_trace(name):
    model = create_model(name, width=0.25).eval()
    x = torch.randn(2, 1, 64, 64)
    traced = torch.jit.trace(model, x, check_trace=False)
    other = torch.randn(3, 1, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))
        torch.testing.assert_close(traced(other), model(other))


def _onnx_matches(model, path, dynamo):
    import numpy as np
    import onnxruntime as ort

    x = torch.randn(2, 1, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=dynamo)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        ref = model(x).numpy()
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_onnx_export_matches_onnxruntime(name, tmp_path):
    pytest.importorskip("onnxruntime")
    kwargs = {"zero_init_last": False} if name == "covidnet" else {}
    model = create_model(name, width=0.25, **kwargs)
    _onnx_matches(model.eval(), tmp_path / f"{name}.onnx", dynamo=False)


def test_onnx_dynamo_export_pepx_resnet(tmp_path):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    _onnx_matches(create_model("pepx_resnet", width=0.25).eval(), tmp_path / "d.onnx", dynamo=True)
