"""Training throughput per model: seconds per epoch split into data loading and compute, and images/s.

    python benchmarks/train.py --data synthetic --image-size 64 --width 0.25 --n-train 60
    python benchmarks/train.py --data csv:../shared/data/cxr-real/metadata.csv --image-size 128 --width 0.5 \
        --n-train 100 --num-workers 2

Each model trains `--epochs` epochs on a fresh balanced split (`--n-train` images per class) through
`pepx.training.fit` with evaluation switched off; the table reports the last epoch. "data" is the time the
training loop waited for the next batch, "compute" forward + backward + optimiser step.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from pepx.training import TrainConfig, fit
from pepx.training.callbacks import BatchTimer
from pepx.training.run import build_model


def bench(model: str, args: argparse.Namespace, root: Path) -> dict[str, float | str]:
    """Train `model` once; its last epoch's timings."""
    config = TrainConfig(model=model, model_kwargs={"width": args.width}, data=args.data,
                         n_train=args.n_train, n_test=args.n_test, image_size=args.image_size,
                         epochs=args.epochs,
                         batch_size=args.batch_size, num_workers=args.num_workers, eval_splits=[],
                         channels_last=args.channels_last, precision=args.precision, progress=False,
                         num_threads=args.threads)
    timer = BatchTimer()
    start = time.perf_counter()
    fit(config, root / model, callbacks=[timer])
    last = timer.epochs[-1]
    params = sum(p.numel() for p in build_model(config).parameters())
    epoch = last["data_seconds"] + last["compute_seconds"]
    return {"model": model, "params_M": params / 1e6, "epoch_s": epoch,
            "data_s": last["data_seconds"], "compute_s": last["compute_seconds"], "images": last["images"],
            "images_per_s": last["images_per_second"], "total_s": time.perf_counter() - start}


def table(rows: list[dict[str, float | str]]) -> str:
    """A Markdown table of `rows`."""
    cols = list(rows[0])
    fmt = {"params_M": "{:.2f}", "images": "{:.0f}"}
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        cells = [v if isinstance(v, str) else fmt.get(k, "{:.1f}").format(v) for k, v in row.items()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="synthetic")
    p.add_argument("--models", nargs="+", default=["pepx_resnet", "resnet18", "covidnet"])
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--n-train", type=int, default=100, help="training images per class")
    p.add_argument("--n-test", type=int, default=5, help="test images per class (the split needs some)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--precision", default="auto")
    p.add_argument("--channels-last", action="store_true")
    args = p.parse_args()
    threads = args.threads or torch.get_num_threads()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {threads} threads"
    print(f"Profile: {args.data}, {args.image_size} px, width {args.width}, {3 * args.n_train} training "
          f"images, batch {args.batch_size}, {args.num_workers} workers, {device}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench(model, args, Path(tmp)) for model in args.models]
    print(table(rows))


if __name__ == "__main__":
    main()
