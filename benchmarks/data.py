"""Data-loading benchmark on the real set: PNG decode+resize vs the cache, and its share of a training step.

Run from the repository root: `python benchmarks/data.py [--n 600] [--size 128] [--batch 32]`.
Reads ../shared/data/cxr-real (exits cleanly where absent); the cache goes to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cxr-real"


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:10.0f} images/s ({seconds / n * 1e3:7.3f} ms/image)"


def full_size_png(src: str, folder: Path) -> str:
    """A 2048 x 2500 PNG upsampled from a real image: the size of originals before cxr-real shrank them."""
    from PIL import Image

    out = folder / "full.png"
    Image.open(src).convert("L").resize((2048, 2500), Image.BICUBIC).save(out)
    return str(out)


def best_of(k: int, fn: Callable[[], object]) -> float:
    """Fastest of k runs (seconds): the least disturbed by other work on a shared CPU."""
    times = []
    for _ in range(k):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600, help="images to time")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5, help="timed ResNet18 training steps")
    args = ap.parse_args()
    if not (REAL / "metadata.csv").is_file():
        print(f"skipped: {REAL} is absent")
        return 0
    from pepx.data import CXRDataset, Preprocess, load_source
    from pepx.data.transforms import load_preprocessed

    m = load_source(f"csv:{REAL / 'metadata.csv'}").manifest
    m = m.sample(args.n, random_state=0).reset_index(drop=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(m)} images; {args.size} px;",
          "load average", " ".join(f"{v:.1f}" for v in os.getloadavg()))
    t_png = best_of(2, lambda: [load_preprocessed(p, args.size, Preprocess()) for p in m["path"]])
    print(f"decode + crop + resize from PNG : {rate(len(m), t_png)}")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        ds = CXRDataset(m, image_size=args.size, cache_dir=tmp)
        print(f"cache build (2 threads)         : {rate(len(m), time.perf_counter() - t)}")
        ds = CXRDataset(m, image_size=args.size, cache_dir=tmp)  # all hits: only stats the files
        t_cache = best_of(3, lambda: [ds[i] for i in range(len(ds))])
        print(f"read from cache (+ normalise)   : {rate(len(m), t_cache)}   -> {t_png / t_cache:.0f}x faster")
        t_raw = best_of(3, lambda: [ds.images[i].copy() for i in range(len(ds))])
        print(f"read from cache (uint8 only)    : {rate(len(m), t_raw)}   -> {t_png / t_raw:.0f}x faster")
        full = full_size_png(m["path"][0], Path(tmp))
        t_full = best_of(2, lambda: [load_preprocessed(full, args.size, Preprocess()) for _ in range(10)])
        t_full /= 10
        print(f"decode + resize, full-size PNG  : {rate(1, t_full)} (2048x2500, as originals are)"
              f"   -> cached read is {t_full / (t_cache / len(m)):.0f}x faster")
        aug = CXRDataset(m, image_size=args.size, augment=True, cache_dir=tmp)
        t_aug = best_of(3, lambda: [aug[i] for i in range(len(aug))])
        print(f"read from cache + augmentation  : {rate(len(m), t_aug)}")
        loader = torch.utils.data.DataLoader(aug, batch_size=args.batch, shuffle=True, num_workers=0)
        step_share(loader, args)
    return 0


def step_share(loader: torch.utils.data.DataLoader, args: argparse.Namespace) -> None:
    """Time loading a batch (cached, augmented, main process) vs one ResNet18 training step."""
    try:
        from pepx.models import create_model
    except ImportError as e:
        print(f"ResNet18 step: skipped ({e})")
        return
    model = create_model("resnet18", in_chans=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    it = iter(loader)
    t_load = t_step = 0.0
    for k in range(args.steps + 1):
        t0 = time.perf_counter()
        x, y = next(it)
        t1 = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        t2 = time.perf_counter()
        if k:  # the first step warms up
            t_load, t_step = t_load + t1 - t0, t_step + t2 - t1
    n = args.steps
    share = t_load / (t_load + t_step)
    print(f"ResNet18 @ {args.size} px, batch {args.batch}: load {t_load / n * 1e3:.1f} ms + step "
          f"{t_step / n * 1e3:.1f} ms per batch -> data loading is {share:.1%} of a training step "
          f"({'meets' if share < 0.05 else 'misses'} the < 5 % goal)")


if __name__ == "__main__":
    sys.exit(main())
