"""`pepx serve`: choose the runtime, build the app, run it on uvicorn with safe defaults.

Runtime `auto` (the default) uses ONNX Runtime when the bundle carries an ONNX export (`pepx export
--format onnx`), onnxruntime is installed, the device is the CPU, and a short measurement at startup finds it
faster than eager PyTorch on the same inputs; otherwise PyTorch. `/v1/health` says which and why.

Safe defaults: binds 127.0.0.1; a token (`--token` or `$PEPX_TOKEN`) turns on bearer authentication of every
`/v1/` call, and binding any non-loopback address without one prints a warning; CORS only with `--cors`.
The address is bound before the model is loaded: a port in use or a host that is not this machine's is one
line (`ConfigError`), never uvicorn's log and exit status 1.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import uvicorn

from pepx.errors import ConfigError
from pepx.serving.app import NOTICE, create_app
from pepx.serving.bundle import Bundle, load_bundle
from pepx.serving.predictor import Predictor
from pepx.serving.settings import ServeSettings

RUNTIME_CHOICES = ("auto", "torch", "onnx")
#: Images per timed batch and timed repeats when `auto` compares the runtimes.
PROBE_BATCH, PROBE_REPEATS = 4, 3


def load_predictor(model: str | Path | None = None, runtime: str = "auto", device: str | None = None,
                   channels_last: bool = False, gate: bool = True) -> tuple[Predictor, dict[str, Any]]:
    """The `Predictor` to serve the bundle `model` (None: the shipped one) and how its runtime was chosen.
    `channels_last` applies to the torch runtime (faster on many CPUs; agrees with `pepx predict` to ~1e-6
    instead of bit for bit); `gate`: run the bundle's input gate. `auto` times each runtime with the gate on
    (with ONNX the gate needs the torch network too, so torch usually wins then)."""
    if runtime not in RUNTIME_CHOICES:
        raise ConfigError(f"--runtime {runtime!r}: choose one of {', '.join(RUNTIME_CHOICES)}")
    bundle = load_bundle(model)
    if runtime != "auto":
        predictor = Predictor(bundle, runtime=runtime, device=device, channels_last=channels_last, gate=gate)
        return predictor, {"runtime": runtime, "reason": "asked for", "channels_last": channels_last}
    eager = Predictor(bundle, runtime="torch", device=device, channels_last=channels_last, gate=gate)
    why_not = _onnx_unavailable(bundle, eager)
    if why_not:
        return eager, {"runtime": "torch", "reason": why_not, "channels_last": channels_last}
    onnx = Predictor(bundle, runtime="onnx", device=device, gate=gate)
    ms = {name: _ms_per_image(p) for name, p in (("torch", eager), ("onnx", onnx))}
    best = min(ms, key=ms.get)
    info = {"runtime": best, "reason": f"faster at startup on {PROBE_BATCH}-image batches",
            "ms_per_image": {k: round(v, 2) for k, v in ms.items()}, "channels_last": channels_last}
    return (onnx if best == "onnx" else eager), info


def _onnx_unavailable(bundle: Bundle, eager: Predictor) -> str | None:
    if not (bundle.config.get("exports") or {}).get("onnx"):
        return "the bundle has no ONNX export (pepx export --format onnx)"
    if eager.device.type != "cpu":
        return f"device {eager.device} (ONNX Runtime is used on the CPU only)"
    return None


def _ms_per_image(predictor: Predictor) -> float:
    size = predictor.image_size
    x = torch.randn(PROBE_BATCH, predictor.bundle.in_chans, size, size,
                    generator=torch.Generator().manual_seed(0))
    predictor.score_tensor(x)  # warm-up
    times = []
    for _ in range(PROBE_REPEATS):
        t0 = time.perf_counter()
        predictor.score_tensor(x)
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times) / PROBE_BATCH


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: A host name as RFC 1123 allows it (checked before any lookup, so a typo never waits for a resolver).
_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to (`host`, `port`), ready for uvicorn; `ConfigError` naming the option otherwise."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port}: must be in [1, 65535]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOST_NAME.match(host):
            raise ConfigError(f"--host {host!r}: not an IP address or a host name") from None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as err:
        raise ConfigError(f"--host {host}: cannot resolve it ({err.strerror})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise ConfigError(f"--port {port}: address {host}:{port} is already in use (another server?); "
                              "choose another --port") from None
        if err.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(f"--host {host}: not an address of this machine") from None
        raise ConfigError(f"--host {host} --port {port}: cannot listen there ({err.strerror})") from None
    return sock


def serve(model: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000, runtime: str = "auto",
          device: str | None = None, channels_last: bool = False, settings: ServeSettings | None = None,
          log_level: str = "info", gate: bool = True) -> None:
    """Bind the address, load the bundle, print where the page is, and serve until interrupted (uvicorn)."""
    settings = settings or ServeSettings()
    sock = bind(host, port)
    try:
        _serve(sock, model, host, port, runtime, device, channels_last, settings, log_level, gate)
    finally:
        sock.close()


def _serve(sock: socket.socket, model: str | Path | None, host: str, port: int, runtime: str,
           device: str | None, channels_last: bool, settings: ServeSettings, log_level: str,
           gate: bool) -> None:
    if not settings.token and not is_loopback(host):
        print(f"pepx serve: warning: listening on {host} without a token: anyone who can reach this port can "
              "use the model; set --token or $PEPX_TOKEN", file=sys.stderr)
    predictor, info = load_predictor(model, runtime, device, channels_last, gate)
    settings = settings.model_copy(update={"runtime_info": info})
    app = create_app(predictor, settings)
    bundle = predictor.bundle
    shown = f"[{host}]" if ":" in host else host
    print(f"pepx serve: {bundle.id} {bundle.version} from {bundle.path}; runtime {info['runtime']} "
          f"({info['reason']}); batching: up to {settings.max_batch} images, "
          f"{settings.max_wait_ms:g} ms wait, queue {settings.max_queue}; input gate {predictor.gate_status}",
          flush=True)
    print(f"pepx serve: page http://{shown}:{port}/  API http://{shown}:{port}/docs  "
          f"token {'required' if settings.token else 'off'}. {NOTICE}", flush=True)
    # connections beyond the limit get uvicorn's 503 before their body is read
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                            limit_concurrency=4 * settings.max_queue + 16, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])


__all__ = ["RUNTIME_CHOICES", "bind", "is_loopback", "load_predictor", "serve"]
