"""Load test of `pepx serve` on loopback: p50 / p99 latency and throughput per number of concurrent clients,
with dynamic batching on and off.

    python benchmarks/serve.py                                   # full: 224 px PEPX-ResNet, 1/4/16/64 clients
    python benchmarks/serve.py --quick                           # seconds: 64 px, width 0.25, 1/4 clients
    python benchmarks/serve.py --model BUNDLE --clients 1 16     # a bundle of your own

The script starts `pepx serve` itself (a subprocess on a free loopback port) once per batching setting, waits
for /v1/health, warms up, then for each client count runs closed-loop clients (httpx, asyncio; each sends its
next request when the previous answer arrives) until `--requests` answers or `--duration` seconds, whichever
comes first, and stops the server. Every request uploads the same radiograph (a real one from
../shared/data/cxr-real when present, else a synthetic film) to POST /v1/predict without Grad-CAM.

Without `--model` it serves an untrained PEPX-ResNet (width 1.0) at `--image-size` (224): the cost of a
forward pass does not depend on the weights. Batching "on" is the server's default (up to 16 images, 5 ms
wait); "off" is `--max-batch 1`. "503" counts the designed refusals of a full queue; anything else that is
not 200 is an error. The last lines check the issue's goal: with 16 clients and batching on, throughput
>= 1.5x the one-client figure and p99 <= 1 s, and no error responses at any level. The client runs on the
same machine and takes some of its CPU: on a small machine that understates the server.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import torch
from PIL import Image

from pepx.markdown import markdown_table
from pepx.models import create_model
from pepx.serving.bundle import bundle_config, write_bundle

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cxr-real"


def make_bundle(out: Path, image_size: int, width: float) -> Path:
    """An untrained PEPX-ResNet bundle (timing only: its answers mean nothing)."""
    torch.manual_seed(0)
    model = create_model("pepx_resnet", width=width).eval()
    config = bundle_config("pepx_resnet", {"width": width}, image_size=image_size,
                           bundle_id="untrained-bench", version="0")
    write_bundle(model, out, config, card="# untrained PEPX-ResNet for benchmarks/serve.py\n")
    return out


def film() -> tuple[str, bytes]:
    """One radiograph as PNG bytes: a real adult film from cxr-real when present, else a synthetic one."""
    if (REAL / "metadata.csv").is_file():
        meta = pd.read_csv(REAL / "metadata.csv")
        path = REAL / meta[meta["age_group"] == "adult"]["filename"].iloc[0]
        return path.name, path.read_bytes()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:320, 0:300]
    img = 0.5 + 0.3 * np.sin(yy / 9.0) * np.cos(xx / 7.0) + 0.1 * rng.random((320, 300))
    buffer = io.BytesIO()
    Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return "synthetic.png", buffer.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`pepx serve` in a subprocess, stopped on exit."""

    def __init__(self, bundle: Path, max_batch: int, extra: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        cmd = [sys.executable, "-m", "pepx.cli", "serve", "--model", str(bundle), "--port", str(self.port),
               "--max-batch", str(max_batch), *extra]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.__exit__()
        raise SystemExit(f"pepx serve did not come up:\n{Path(self.log.name).read_text()}")

    def health(self) -> dict:
        return httpx.get(f"{self.url}/v1/health", timeout=10).json()

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()
        os.unlink(self.log.name)


async def load(url: str, clients: int, requests: int, duration: float, name: str, data: bytes) -> dict:
    """`clients` closed-loop clients until `requests` answers or `duration` s; latencies and statuses."""
    latencies: list[float] = []
    statuses: list[int] = []
    stop_at = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        async def one_client() -> None:
            while len(statuses) < requests and time.perf_counter() < stop_at:
                statuses.append(0)  # reserve a slot so the total stays within `requests`
                slot = len(statuses) - 1
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/predict", files={"file": (name, data, "image/png")})
                    statuses[slot] = r.status_code
                    if r.status_code == 503:
                        await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                except httpx.HTTPError:
                    statuses[slot] = -1
                if statuses[slot] == 200:
                    latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        wall = time.perf_counter() - start
    codes = np.asarray(statuses)
    ms = np.asarray(latencies) * 1000.0
    return {"requests": len(codes), "ok": int((codes == 200).sum()), "503": int((codes == 503).sum()),
            "errors": int(((codes != 200) & (codes != 503)).sum()), "seconds": wall,
            "images_per_s": (codes == 200).sum() / wall,
            "p50_ms": float(np.percentile(ms, 50)) if len(ms) else float("nan"),
            "p99_ms": float(np.percentile(ms, 99)) if len(ms) else float("nan")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="bundle to serve (default: an untrained PEPX-ResNet at --image-size)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--width", type=float, default=1.0, help="width of the untrained PEPX-ResNet")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--batching", nargs="+", choices=["on", "off"], default=["on", "off"])
    p.add_argument("--requests", type=int, default=300, help="most requests per level (default: 300)")
    p.add_argument("--duration", type=float, default=40.0, help="most seconds per level (default: 40)")
    p.add_argument("--warmup", type=int, default=8, help="requests before each server's first level")
    p.add_argument("--quick", action="store_true", help="64 px, width 0.25, 1 and 4 clients, 16 requests")
    p.add_argument("--serve-args", default="", help="extra `pepx serve` options, e.g. '--runtime torch'")
    args = p.parse_args()
    if args.quick:
        args.image_size, args.width, args.clients = 64, 0.25, [1, 4]
        args.requests, args.duration, args.warmup = 16, 10.0, 2
    name, data = film()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(args.model) if args.model else make_bundle(Path(tmp) / "bundle", args.image_size,
                                                                 args.width)
        rows = []
        for batching in args.batching:
            with Server(bundle, 16 if batching == "on" else 1, args.serve_args.split()) as server:
                info = server.health()
                asyncio.run(load(server.url, 1, args.warmup, 60.0, name, data))
                for clients in args.clients:
                    before = server.health()["batching"]
                    row = asyncio.run(load(server.url, clients, args.requests, args.duration, name, data))
                    after = server.health()["batching"]
                    passes = after["forward_passes"] - before["forward_passes"]
                    row["mean_batch"] = (after["images"] - before["images"]) / passes if passes else 0.0
                    rows.append({"batching": batching, "clients": clients, **row})
                    print(f"batching {batching:>3}, {clients:>2} clients: {row['images_per_s']:.1f} img/s, "
                          f"p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms, {row['503']} x 503, "
                          f"{row['errors']} errors", flush=True)
    table = pd.DataFrame(rows)
    print(f"\n{info['model']['id']} ({name}, {len(data) / 1e3:.0f} kB PNG), runtime {info['runtime']}, "
          f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()} (client side)")
    print(markdown_table(table, digits=1))
    goal(table)


def goal(table: pd.DataFrame) -> None:
    """The issue's acceptance check, printed."""
    on = table[table["batching"] == "on"].set_index("clients")
    errors = int(table["errors"].sum())
    verdict = "PASS" if errors == 0 else "FAIL"
    print(f"\nerror responses (not 200, not 503) at any level: {errors} -> {verdict}")
    if {1, 16} <= set(on.index):
        ratio = on.loc[16, "images_per_s"] / on.loc[1, "images_per_s"]
        p99 = on.loc[16, "p99_ms"]
        verdict = "PASS" if ratio >= 1.5 and p99 <= 1000 else "FAIL"
        print(f"16 clients, batching on: throughput {ratio:.2f}x one client (goal >= 1.5), p99 {p99:.0f} ms "
              f"(goal <= 1000) -> {verdict}")


if __name__ == "__main__":
    main()
