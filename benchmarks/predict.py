"""Inference speed of `pepx predict`'s path: single-image latency and batch throughput per network, runtime.

    python benchmarks/predict.py                              # 224 px, width 1, all networks and runtimes
    python benchmarks/predict.py --quick                      # a smoke run (64 px, width 0.25, few rounds)
    python benchmarks/predict.py --models pepx_resnet --threads 1 --bundle   # + the shipped bundle

Single image, end to end as `Predictor.predict` does it: decode a PNG file (`pepx.data.read_image`),
preprocess (crop, resize, normalise), forward, softmax; p50 / p95 over `--rounds` calls after warm-up, for a
film at the real set's size (`--image`, default a cxr-real PNG; 256 px short side) and for a full-size 2048 x
2500 film. Batch throughput: `Predictor.predict_tensor` on `--batch` preprocessed images (forward + softmax),
images/s, next to the bare model forward measured the same way as benchmarks/models.py in the same process,
so the ratio ("x of fwd") is free of host drift. Runtimes: eager, channels_last, ONNX Runtime, and
torch.compile (`--compile`; eager model compiled with the default inductor backend).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from pepx.data import read_image
from pepx.markdown import markdown_table
from pepx.models import create_model
from pepx.serving import Predictor, load_bundle
from pepx.serving.bundle import bundle_config, write_bundle

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "cxr-real"


def _times(fn, rounds: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _pct(times: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(times) * 1000, q))


def timed_films(folder: Path, image: str | None) -> dict[str, Path]:
    """The films timed: a real-set-sized PNG and a full-size one (both written here when needed)."""
    films = {}
    real = Path(image) if image else next(iter(sorted((REAL / "images" / "COVID-19").glob("*.png"))), None)
    if real is not None and real.is_file():
        films["cxr-real PNG"] = real
    rng = np.random.default_rng(0)
    for name, (h, w) in (("256x320 PNG", (320, 256)), ("2500x2048 PNG", (2500, 2048))):
        if name.startswith("256") and films:
            continue
        yy, xx = np.mgrid[0:h, 0:w]
        arr = (127 + 60 * np.sin(yy / 37.0) * np.cos(xx / 23.0) + rng.normal(0, 8, (h, w))).clip(0, 255)
        path = folder / f"{h}x{w}.png"
        Image.fromarray(arr.astype(np.uint8)).save(path)
        films[name] = path
    return films


def make_predictors(bundle, args) -> dict[str, Predictor]:
    out = {"eager": Predictor(bundle, device="cpu"),
           "channels_last": Predictor(bundle, device="cpu", channels_last=True)}
    try:
        out["onnxruntime"] = Predictor(bundle, runtime="onnx")
    except Exception as err:  # onnxruntime missing: say so and go on
        print(f"  (onnxruntime skipped: {err})")
    if args.compile:
        compiled = Predictor(bundle, device="cpu", channels_last=True)
        compiled._model = torch.compile(compiled._model)
        out["compile+channels_last"] = compiled
    return out


def bench(name: str, bundle, films: dict[str, Path], args) -> list[dict]:
    rows = []
    size = bundle.image_size
    model = bundle.build_model()
    xb = torch.randn(args.batch, 1, size, size)

    def forward():
        with torch.inference_mode():
            model(xb)

    fwd_ips = args.batch / statistics.median(_times(forward, args.rounds))
    for runtime, predictor in make_predictors(bundle, args).items():
        row = {"model": name, "size": size, "runtime": runtime}
        for film, path in films.items():
            t = _times(lambda p=path, pr=predictor: pr.predict([p]), args.single_rounds)
            row[f"{film} p50_ms"], row[f"{film} p95_ms"] = _pct(t, 50), _pct(t, 95)
        ips = args.batch / statistics.median(_times(lambda pr=predictor: pr.predict_tensor(xb), args.rounds))
        row["batch_img/s"], row["model_fwd_img/s"], row["x_of_fwd"] = ips, fwd_ips, ips / fwd_ips
        rows.append(row)
        shown = (f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
        print("  " + ", ".join(shown), flush=True)
    return rows


def breakdown(bundle, path: Path, rounds: int) -> str:
    """Where one single-image call spends its time (eager): decode, preprocess, forward + softmax."""
    predictor = Predictor(bundle, device="cpu")
    img = read_image(path)
    x = predictor.preprocess(img)[None]
    parts = {"decode": _times(lambda: read_image(path), rounds),
             "preprocess": _times(lambda: predictor.preprocess(img), rounds),
             "forward+softmax": _times(lambda: predictor.predict_tensor(x), rounds)}
    return ", ".join(f"{k} {_pct(v, 50):.1f} ms" for k, v in parts.items())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["pepx_resnet", "resnet18", "covidnet"])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5, help="timed batch rounds (median)")
    p.add_argument("--single-rounds", type=int, default=50, help="timed single-image calls (p50, p95)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--image", help="PNG to time (default: a cxr-real film when ../shared is there)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (slow to warm up)")
    p.add_argument("--bundle", action="store_true", help="also time the shipped bundle at its own size")
    p.add_argument("--quick", action="store_true", help="smoke run: 64 px, width 0.25, 3 rounds")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.width, args.rounds, args.single_rounds, args.batch = 64, 0.25, 3, 5, 8
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, width {args.width}, "
          f"{args.size} px")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        films = timed_films(tmp, args.image)
        print("films: " + ", ".join(f"{k} ({v.name})" for k, v in films.items()))
        rows = []
        for name in args.models:
            torch.manual_seed(0)
            model = create_model(name, width=args.width).eval()
            config = bundle_config(name, {"width": args.width}, image_size=args.size, bundle_id=name)
            bundle = write_bundle(model, tmp / name, config, half=False)
            print(f"{name}: {breakdown(bundle, next(iter(films.values())), args.single_rounds)}")
            rows += bench(name, bundle, films, args)
        if args.bundle:
            bundle = load_bundle(None)
            where = breakdown(bundle, next(iter(films.values())), args.single_rounds)
            print(f"shipped bundle {bundle.id}: {where}")
            rows += bench(f"bundle:{bundle.id}", bundle, films, args)
    print()
    print(markdown_table(pd.DataFrame(rows), digits=1))


if __name__ == "__main__":
    main()
