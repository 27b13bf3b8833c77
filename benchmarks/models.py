"""Throughput of pepx's models on this machine: params, forward GFLOPs, images/s, achieved GFLOP/s.

    python benchmarks/models.py                          # 128 and 224 px, width 1, channels_last off and on
    python benchmarks/models.py --sizes 64 96 128 --width 0.25 0.5 --train-only --formats contiguous

For each model, width and size: parameters, forward GFLOPs per image (``torch.utils.flop_counter``), forward
(eval, no grad) and training-step (forward + cross-entropy + backward + SGD step) images/s at ``--batch``
(median of ``--rounds`` timed rounds after one warm-up), and achieved GFLOP/s (a training step counted as
3x the forward FLOPs). A 2048x2048 fp32 matmul's GFLOP/s is measured right before every row (``mm_GF/s``) and
each row's training rate is given as a fraction of it, so host-speed drift during the run cancels out. The
closing lines compare every model with ResNet18 (training images/s and FLOPs) at each size and format.
Runs on CPU with ``--threads`` threads (default 2).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from pepx.models import count_flops, count_params, create_model


def _median_seconds(fn, rounds: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_gflops(n: int = 2048, rounds: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / _median_seconds(lambda: a @ b, rounds) / 1e9


def bench_one(name: str, width: float, size: int, args, channels_last: bool) -> dict[str, float]:
    torch.manual_seed(0)
    model = create_model(name, width=width)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.randn(args.batch, 1, size, size).contiguous(memory_format=fmt)
    y = torch.arange(args.batch) % 3
    out: dict[str, float] = {}
    if not args.train_only:
        model.eval()

        def forward():
            with torch.no_grad():
                model(x)

        out["fwd_ips"] = args.batch / _median_seconds(forward, args.rounds)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    out["train_ips"] = args.batch / _median_seconds(step, args.rounds)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["pepx_resnet", "resnet18", "covidnet"])
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    p.add_argument("--width", type=float, nargs="+", default=[1.0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--formats", nargs="+", choices=["contiguous", "channels_last"],
                   default=["contiguous", "channels_last"])
    p.add_argument("--train-only", action="store_true", help="skip the forward-only timing")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, "
          f"median of {args.rounds} rounds")
    head = (f"{'model':<12} {'width':>5} {'size':>4} {'format':<14} {'params_M':>8} {'GFLOPs':>7} "
            f"{'fwd_img/s':>9} {'fwd_GF/s':>8} {'train_img/s':>11} {'train_GF/s':>10} {'mm_GF/s':>7} "
            f"{'train/mm':>8}")
    print(head)
    rows: dict[tuple[str, float, int, str], tuple[float, float]] = {}
    for name in args.models:
        for width in args.width:
            model = create_model(name, width=width)
            params = count_params(model) / 1e6
            for size in args.sizes:
                gflops = count_flops(model, size) / 1e9
                for fmt in args.formats:
                    mm = matmul_gflops(rounds=3)
                    r = bench_one(name, width, size, args, fmt == "channels_last")
                    train_gfs = 3 * gflops * r["train_ips"]
                    rows[name, width, size, fmt] = (r["train_ips"], gflops)
                    fwd = (f"{r['fwd_ips']:>9.1f} {gflops * r['fwd_ips']:>8.1f}" if "fwd_ips" in r
                           else f"{'-':>9} {'-':>8}")
                    print(f"{name:<12} {width:>5.2f} {size:>4} {fmt:<14} {params:>8.2f} {gflops:>7.3f} {fwd} "
                          f"{r['train_ips']:>11.1f} {train_gfs:>10.1f} {mm:>7.1f} {train_gfs / mm:>8.1%}",
                          flush=True)
    _print_ratios(rows)


def _print_ratios(rows: dict[tuple[str, float, int, str], tuple[float, float]]) -> None:
    """Each model against ResNet18 at the same width, size and format: training speed and FLOPs."""
    lines = []
    for (name, width, size, fmt), (ips, gflops) in rows.items():
        ref = rows.get(("resnet18", width, size, fmt))
        if name != "resnet18" and ref:
            lines.append(f"{name:<12} {width:>5.2f} {size:>4} {fmt:<14} train speed {ips / ref[0]:>5.2f}x, "
                         f"FLOPs {gflops / ref[1]:>5.2f}x of resnet18")
    if lines:
        print("\n".join(["", "relative to resnet18 (same width, size, format):", *lines]))


if __name__ == "__main__":
    main()
