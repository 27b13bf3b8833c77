"""Dynamic batching: fewer forward passes than requests, same numbers, a bounded queue (503 + Retry-After);
`pepx serve`'s CLI handler and runtime choice."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from fakes.bundles import SIZE
from fakes.images import radiograph, save_png
from pepx.cli import main
from pepx.serving import Predictor, default_bundle_path
from pepx.serving.app import create_app
from pepx.serving.batching import DynamicBatcher, QueueFullError
from pepx.serving.export import export_formats
from pepx.serving.server import load_predictor
from pepx.serving.settings import ServeSettings


@pytest.fixture(scope="module")
def predictor(tiny_bundle):
    return Predictor.from_bundle(tiny_bundle, device="cpu")


class Counted:
    """`predict_tensor` that records each forward pass's batch size and can be held at a gate."""

    def __init__(self, predict):
        self.predict, self.sizes = predict, []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        self.entered.set()
        self.gate.wait(30)
        self.sizes.append(len(x))
        return self.predict(x)


def inputs(n: int) -> torch.Tensor:
    return torch.randn(n, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(n))


# --------------------------------------------------------------------------- the batcher itself
def test_concurrent_images_share_forward_passes_and_keep_their_numbers(predictor):
    counted = Counted(predictor.predict_tensor)
    batcher = DynamicBatcher(counted, max_batch=8, max_wait_ms=200, max_queue=32).start()
    x = inputs(12)
    try:
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(lambda i: batcher.submit(x[i]).result(30), range(12)))
    finally:
        batcher.stop()
    assert sum(counted.sizes) == 12 and len(counted.sizes) < 12 and max(counted.sizes) <= 8
    single = np.concatenate([predictor.predict_tensor(x[i : i + 1]) for i in range(12)])
    got = np.stack([r.probabilities for r in results])
    assert np.abs(got - single).max() < 1e-6  # each image gets its own row back, whatever its batch
    assert {r.batch_size for r in results} <= set(counted.sizes)
    stats = batcher.stats()
    assert stats["images"] == 12 and stats["forward_passes"] == len(counted.sizes)


def test_max_batch_one_turns_batching_off(predictor):
    counted = Counted(predictor.predict_tensor)
    batcher = DynamicBatcher(counted, max_batch=1, max_wait_ms=50).start()
    x = inputs(6)
    try:
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(lambda i: batcher.submit(x[i]).result(30), range(6)))
    finally:
        batcher.stop()
    assert counted.sizes == [1] * 6


def test_full_queue_refuses_with_retry_after_and_stop_answers_the_queue(predictor):
    counted = Counted(predictor.predict_tensor)
    counted.gate.clear()
    batcher = DynamicBatcher(counted, max_batch=1, max_wait_ms=0, max_queue=3).start()
    x = inputs(5)
    first = batcher.submit(x[0])
    assert counted.entered.wait(10)  # the worker holds image 0 at the gate; the queue is empty again
    queued = [batcher.submit(x[i]) for i in range(1, 4)]
    with pytest.raises(QueueFullError) as err:
        batcher.submit(x[4])
    assert err.value.retry_after >= 1 and err.value.depth == 3 and batcher.stats()["rejected"] == 1
    counted.gate.set()
    assert all(f.result(30).batch_size == 1 for f in [first, *queued])
    counted.gate.clear()
    counted.entered.clear()
    held = batcher.submit(x[0])
    assert counted.entered.wait(10)
    waiting = batcher.submit(x[1])
    threading.Timer(0.3, counted.gate.set).start()
    batcher.stop()
    assert held.result(10).batch_size == 1 and waiting.result(10).batch_size == 1
    with pytest.raises(RuntimeError, match="before start"):
        batcher.submit(x[2])


# --------------------------------------------------------------------------- through the app
def test_concurrent_requests_are_batched_and_a_full_queue_answers_503(predictor, tmp_path):
    data = save_png(tmp_path / "a.png", radiograph()).read_bytes()
    app = create_app(predictor, ServeSettings(max_batch=16, max_wait_ms=100, max_queue=8, decode_workers=4))
    counted = Counted(app.state.batcher.predict)
    app.state.batcher.predict = counted

    def one(i):
        return c.post("/v1/predict", files={"file": (f"{i}.png", data, "image/png")})

    with TestClient(app) as c, ThreadPoolExecutor(12) as pool:
        ok = list(pool.map(one, range(8)))
        assert [r.status_code for r in ok] == [200] * 8
        assert len(counted.sizes) < 8 and sum(counted.sizes) == 8
        probs = {tuple(r.json()["predictions"][0]["probabilities"].values()) for r in ok}
        assert len({tuple(round(p, 5) for p in ps) for ps in probs}) == 1  # the same image, batched or not
        health = c.get("/v1/health").json()["batching"]
        assert health["forward_passes"] == len(counted.sizes) and health["images"] == 8

        counted.gate.clear()
        counted.entered.clear()
        held = [pool.submit(one, 100)]
        assert counted.entered.wait(10)
        held += [pool.submit(one, 101 + i) for i in range(10)]  # 8 fit in the queue, 2 do not
        assert _wait_rejected(app, 2)
        counted.gate.set()
        responses = [f.result(30) for f in held]
    assert sorted(r.status_code for r in responses) == [200] * 9 + [503] * 2
    r = next(r for r in responses if r.status_code == 503)
    assert int(r.headers["retry-after"]) >= 1 and "queue full" in r.json()["detail"]


def _wait_rejected(app, n: int, timeout: float = 20.0) -> bool:
    for _ in range(int(timeout / 0.05)):
        if app.state.batcher.stats()["rejected"] >= n:
            return True
        threading.Event().wait(0.05)
    return False


# --------------------------------------------------------------------------- CLI and runtime
def test_cli_serve_defaults_warning_and_token(tiny_bundle, monkeypatch, capsys):
    import socket

    import uvicorn

    import pepx.serving.server

    calls = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: calls.append(
        (self.config.app, {"host": self.config.host, "port": self.config.port, "sockets": sockets})))
    # port 8000 may be busy on this machine: the bind itself is tested in tests/hostile/test_hostile_serve.py
    monkeypatch.setattr(pepx.serving.server, "bind", lambda host, port: socket.socket())
    monkeypatch.delenv("PEPX_TOKEN", raising=False)
    assert main(["serve", "--model", str(tiny_bundle)]) == 0
    app, kw = calls[-1]
    assert (kw["host"], kw["port"]) == ("127.0.0.1", 8000) and app.state.settings.token is None
    assert app.state.settings.cors_origins == () and "warning" not in capsys.readouterr().err
    assert main(["serve", "--model", str(tiny_bundle), "--host", "0.0.0.0", "--max-batch", "1",
                 "--channels-last"]) == 0
    err = capsys.readouterr().err
    assert "warning: listening on 0.0.0.0 without a token" in err
    assert calls[-1][0].state.batcher.max_batch == 1
    assert calls[-1][0].state.settings.runtime_info["channels_last"] is True
    monkeypatch.setenv("PEPX_TOKEN", "from-env")
    assert main(["serve", "--model", str(tiny_bundle), "--host", "0.0.0.0", "--cors", "https://a.example"]
                ) == 0
    app = calls[-1][0]
    assert app.state.settings.token == "from-env" and "warning" not in capsys.readouterr().err
    assert app.state.settings.cors_origins == ("https://a.example",)
    assert main(["serve", "--model", str(tiny_bundle.parent / "missing")]) == 2
    assert "pepx serve: error:" in capsys.readouterr().err and len(calls) == 3
    assert main(["serve"]) == 0  # no --model: the bundle shipped inside the package
    assert calls[-1][0].state.predictor.bundle.path == default_bundle_path()


def test_runtime_auto_measures_onnx_only_when_exported(tiny_bundle, tmp_path):
    pytest.importorskip("onnxruntime")
    predictor, info = load_predictor(tiny_bundle, "auto", "cpu")
    assert predictor.runtime == "torch" and "no ONNX export" in info["reason"]
    exported = Predictor.from_bundle(tiny_bundle, device="cpu").bundle.save(tmp_path / "b")
    export_formats(exported, ["onnx"], torch.randn(2, 1, SIZE, SIZE))
    predictor, info = load_predictor(tmp_path / "b", "auto", "cpu")
    assert set(info["ms_per_image"]) == {"torch", "onnx"} and predictor.runtime == info["runtime"]
    assert info["runtime"] == min(info["ms_per_image"], key=info["ms_per_image"].get)
    forced, info = load_predictor(tmp_path / "b", "onnx", "cpu")
    assert forced.runtime == "onnx" and info["reason"] == "asked for"
