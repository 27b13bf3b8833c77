"""What the input gate adds to a prediction: single-film latency with the gate on and off, measured in
alternation in one process (so the shared CPU's drift hits both alike), and batch throughput.

    python benchmarks/gate.py                     # the shipped bundle, 1 thread, 200 alternating rounds
    python benchmarks/gate.py --threads 2 --rounds 400 --bundle my-bundle
    python benchmarks/gate.py --quick             # a smoke run (a tiny gated bundle, 20 rounds)

Single film: `Predictor.predict([png])` end to end (decode, preprocess, forward, softmax; with the gate also
the pooled stage features, Mahalanobis distances and the logistic score) on a cxr-real PNG (`--image`; a
synthetic 256 x 320 PNG where ../shared is absent). Each round times gate-on and gate-off, which one first
alternating from round to round; reported:
p50 / p95 of each, the ratio of the p50s, and the median and 5th-95th percentiles of the per-round ratio;
then the same rounds in this thread's CPU time (what a busy shared machine cannot inflate).
Batch: `score_tensor` (gate) against `predict_tensor` (no gate) on `--batch` preprocessed films. Last, the
gate's own arithmetic per film (distances, score, verdict: `Gate.judge` on features already computed).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pepx.serving import Predictor, load_bundle

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "cxr-real"


def film(folder: Path, image: str | None) -> Path:
    if image:
        return Path(image)
    real = next(iter(sorted((REAL / "images" / "COVID-19").glob("*.png"))), None)
    if real is not None:
        return real
    yy, xx = np.mgrid[0:320, 0:256]
    arr = (127 + 60 * np.sin(yy / 37.0) * np.cos(xx / 23.0)).clip(0, 255).astype(np.uint8)
    Image.fromarray(arr).save(folder / "film.png")
    return folder / "film.png"


def tiny_gated(folder: Path):
    """A tiny untrained bundle with a gate fitted on synthetic films (for --quick)."""
    from pepx.data import balanced_split, load_source
    from pepx.models import create_model
    from pepx.serving.bundle import bundle_config, write_bundle
    from pepx.serving.gate.build import fit_bundle_gate

    torch.manual_seed(0)
    model = create_model("pepx_resnet", width=0.25).eval()
    config = bundle_config("pepx_resnet", {"width": 0.25}, image_size=64)
    bundle = write_bundle(model, folder / "plain", config)
    split = balanced_split(load_source("synthetic:n_per_class=30,size=64").manifest, 15, 5, n_val=10)
    return fit_bundle_gate(bundle, split).save(folder / "gated")


def alternate(on, off, rounds: int, warmup: int = 5,
              clock=time.perf_counter) -> tuple[np.ndarray, np.ndarray]:
    """Milliseconds of `on` and `off` per round (`clock`: wall time, or `time.thread_time` for this thread's
    CPU time, which time slices lost to other processes do not inflate)."""
    for _ in range(warmup):
        on(), off()
    t_on, t_off = np.empty(rounds), np.empty(rounds)
    for r in range(rounds):  # on-off, then off-on: neither always runs first
        first, second = (on, off) if r % 2 == 0 else (off, on)
        t0 = clock()
        first()
        t1 = clock()
        second()
        t2 = clock()
        a, b = t1 - t0, t2 - t1
        t_on[r], t_off[r] = (a, b) if r % 2 == 0 else (b, a)
    return t_on * 1000, t_off * 1000


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", help="bundle folder (default: the shipped one)")
    p.add_argument("--image", help="PNG to time")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.quick:
            args.rounds, args.batch = 20, 8
            bundle = tiny_gated(tmp)
        else:
            bundle = load_bundle(args.bundle)
        if bundle.gate is None:
            raise SystemExit(f"{bundle.path}: no gate to measure")
        path = film(tmp, args.image)
        gated, plain = Predictor(bundle, device="cpu"), Predictor(bundle, device="cpu", gate=False)
        print(f"torch {torch.__version__}, {args.threads} thread(s); {bundle.id} {bundle.version} "
              f"({bundle.image_size} px); film {path.name}; {args.rounds} alternating rounds")
        t_on, t_off = alternate(lambda: gated.predict([path]), lambda: plain.predict([path]), args.rounds)
        ratio = t_on / t_off
        for name, t in (("on ", t_on), ("off", t_off)):
            p50, p95 = np.percentile(t, [50, 95])
            print(f"single film, gate {name}: p50 {p50:.2f} ms, p95 {p95:.2f} ms")
        print(f"ratio of p50s {np.median(t_on) / np.median(t_off):.3f}; per-round ratio median "
              f"{np.median(ratio):.3f} [5th-95th percentile {np.percentile(ratio, 5):.3f}, "
              f"{np.percentile(ratio, 95):.3f}]")
        rng = np.random.default_rng(0)
        x = torch.stack([gated.preprocess(rng.random((256, 256), dtype=np.float32))
                         for _ in range(args.batch)])
        b_on, b_off = alternate(lambda: gated.score_tensor(x), lambda: plain.predict_tensor(x),
                                max(5, args.rounds // 20), warmup=2)
        c_on, c_off = alternate(lambda: gated.predict([path]), lambda: plain.predict([path]), args.rounds,
                                clock=time.thread_time)
        print(f"single film, CPU time of this thread: gate on {np.median(c_on):.2f} ms, off "
              f"{np.median(c_off):.2f} ms, ratio of medians {np.median(c_on) / np.median(c_off):.3f}")
        x1 = x[:1]
        _, feats = gated.gate.features(x1)
        judge_ms = alternate(lambda: gated.gate.judge(x1, feats), lambda: None, args.rounds)[0]
        judge = statistics.median(judge_ms)
        print(f"the gate's own arithmetic (Gate.judge on one film's features): {judge:.3f} ms")
        print(f"batch of {args.batch}: gate on {args.batch / statistics.median(b_on) * 1000:.1f} img/s, off "
              f"{args.batch / statistics.median(b_off) * 1000:.1f} img/s (ratio of medians "
              f"{statistics.median(b_on) / statistics.median(b_off):.3f})")


if __name__ == "__main__":
    main()
