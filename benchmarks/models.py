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

    python benchmarks/models.py --compare                # the decisions below, at the cpu profile's setting

``--compare`` measures in one process, interleaved round by round at ``--threads`` (use 1 on a shared
machine: the ratios survive load that the absolute numbers do not), PEPX-ResNet and ResNet18 training steps
in several variants, and prints each decision with the median per-round speed ratio: channels_last vs
contiguous (kept as `TrainConfig`'s default when it wins for both networks), PEPX-ResNet's plain
``A*f1 + B*sx + C*p`` block sums (the model's) vs fused ``addcmul`` sums (worth adopting only when faster and
bit-identical), where the time goes (the same network without its PEPX path, ``use_pepx=False``), a PEPX with
fewer BatchNorms (only after its 3x3 and its extension; the three other 1x1 convs get a bias instead - built
here by surgery, not a model switch, since it did not win: 1.00-1.03x), and whether PEPX-ResNet reaches the
goal of 0.85x ResNet18's training images/s. (Also measured and dropped: torch.compile, two minutes to compile
PEPX-ResNet on CPU and no faster afterwards; PEPX's 1x1 convs as ``F.linear`` on the channels_last view,
bit-identical and 0.98x.)
"""

from __future__ import annotations

import argparse
import statistics
import time
import types

import torch
from torch import nn

from pepx.models import PEPX, count_flops, count_params, create_model
from pepx.models.pepx_resnet import PEPXResNetBlock

GOAL = 0.85  # PEPX-ResNet's training images/s as a fraction of ResNet18's
KEEP = 1.03  # a change is kept when it makes training at least 3 % faster


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
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="default 128 224 (--compare: 112)")
    p.add_argument("--width", type=float, nargs="+", default=None, help="default 1.0 (--compare: 0.5)")
    p.add_argument("--rounds", type=int, default=None, help="default 5 (--compare: 9)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--formats", nargs="+", choices=["contiguous", "channels_last"],
                   default=["contiguous", "channels_last"])
    p.add_argument("--train-only", action="store_true", help="skip the forward-only timing")
    p.add_argument("--compare", action="store_true",
                   help="interleaved variants and decisions (default 112 px, width 0.5, 9 rounds)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.compare:
        compare(size=(args.sizes or [112])[0], width=(args.width or [0.5])[0], batch=args.batch,
                rounds=args.rounds or 9, threads=args.threads)
        return
    args.sizes, args.width, args.rounds = args.sizes or [128, 224], args.width or [1.0], args.rounds or 5

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


def _fused_forward(self: PEPXResNetBlock, x: torch.Tensor, p: torch.Tensor | None = None) -> torch.Tensor:
    """The block with its weighted sums as fused ``torch.addcmul`` (one multiply-add pass per term)."""
    if self.pepx is not None:
        p = self.pepx(x)
    f1, sx = self.f1(x), self.shortcut(x)
    y = torch.addcmul(torch.addcmul(self.f(torch.relu(f1 + sx)), self.A, f1), self.B, sx)
    return self.relu(torch.addcmul(y, self.C, p))


def _light_norm(model: nn.Module) -> None:
    """Drop the BatchNorm after PEPX's first, second and fourth conv; the conv gets a bias in its place."""
    for module in model.modules():
        if isinstance(module, PEPX):
            for name in ("project1", "expand", "project2"):
                seq = getattr(module, name)
                conv = seq[0]
                conv.bias = nn.Parameter(torch.zeros(conv.out_channels))
                seq[1] = nn.Identity()


def _variant(name: str, width: float, channels_last: bool, fused: bool = False, light: bool = False,
             **kwargs) -> nn.Module:
    torch.manual_seed(0)
    model = create_model(name, width=width, **kwargs)
    if light:
        _light_norm(model)
    if fused:
        for block in model.modules():
            if isinstance(block, PEPXResNetBlock):
                block.forward = types.MethodType(_fused_forward, block)
    return model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _train_step(model: nn.Module, size: int, batch: int, channels_last: bool):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch, 1, size, size, generator=torch.Generator().manual_seed(1)).contiguous(
        memory_format=fmt)
    y = torch.arange(batch) % 3
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def _same_numerics(width: float, size: int) -> float:
    """Max |difference| of logits and gradients between the fused and the plain block sums."""
    x, y = torch.randn(4, 1, size, size), torch.tensor([0, 1, 2, 0])
    grads = []
    for fused in (True, False):
        model = _variant("pepx_resnet", width, channels_last=False, fused=fused)
        logits = model(x)
        nn.functional.cross_entropy(logits, y).backward()
        grads.append([logits.detach()] + [p.grad for p in model.parameters()])
    return max(float((a - b).abs().max()) for a, b in zip(*grads, strict=True))


def compare(size: int, width: float, batch: int, rounds: int, threads: int) -> None:
    """Interleaved timing of the variants and the decisions they support (see the module docstring)."""
    variants = {
        ("pepx_resnet", "channels_last"): _variant("pepx_resnet", width, True),
        ("pepx_resnet", "contiguous"): _variant("pepx_resnet", width, False),
        ("pepx_resnet", "channels_last, fused sums"): _variant("pepx_resnet", width, True, fused=True),
        ("pepx_resnet", "channels_last, no PEPX path"): _variant("pepx_resnet", width, True, use_pepx=False),
        ("pepx_resnet", "channels_last, fewer PEPX BNs"): _variant("pepx_resnet", width, True, light=True),
        ("resnet18", "channels_last"): _variant("resnet18", width, True),
        ("resnet18", "contiguous"): _variant("resnet18", width, False),
    }
    steps = {k: _train_step(m, size, batch, "channels_last" in k[1]) for k, m in variants.items()}
    for step in steps.values():
        step()  # warm-up
    seconds: dict[tuple[str, str], list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for key, step in steps.items():
            t0 = time.perf_counter()
            step()
            seconds[key].append(time.perf_counter() - t0)

    def ratio(a: tuple[str, str], b: tuple[str, str]) -> float:
        """Median over rounds of speed(a) / speed(b)."""
        return statistics.median(tb / ta for ta, tb in zip(seconds[a], seconds[b], strict=True))

    print(f"torch {torch.__version__}, {threads} threads, {size} px, width {width}, batch {batch}, "
          f"{rounds} interleaved rounds (training step: forward + CE + backward + Adam)")
    for key, values in seconds.items():
        print(f"  {key[0]:<12} {key[1]:<28} {batch / statistics.median(values):>8.1f} img/s")
    cl = {m: ratio((m, "channels_last"), (m, "contiguous")) for m in ("pepx_resnet", "resnet18")}
    keep_cl = min(cl.values()) >= KEEP
    print(f"channels_last vs contiguous: PEPX-ResNet {cl['pepx_resnet']:.2f}x, "
          f"ResNet18 {cl['resnet18']:.2f}x -> {'keep' if keep_cl else 'drop'} channels_last as the default")
    fused = ratio(("pepx_resnet", "channels_last, fused sums"), ("pepx_resnet", "channels_last"))
    diff = _same_numerics(width, 64)
    keep_fused = fused >= KEEP and diff == 0.0
    print(f"fused addcmul sums vs plain: {fused:.2f}x, max |difference| {diff:.1e} "
          f"-> {'adopt' if keep_fused else 'keep the plain sums (no gain)'}")
    bare = ratio(("pepx_resnet", "channels_last, no PEPX path"), ("resnet18", "channels_last"))
    print(f"without its PEPX path PEPX-ResNet trains at {bare:.2f}x ResNet18: the PEPX network costs the "
          "rest")
    light = ratio(("pepx_resnet", "channels_last, fewer PEPX BNs"), ("pepx_resnet", "channels_last"))
    light_r18 = ratio(("pepx_resnet", "channels_last, fewer PEPX BNs"), ("resnet18", "channels_last"))
    print(f"PEPX with BatchNorm only after its 3x3 and extension vs after every conv: {light:.2f}x "
          f"({light_r18:.2f}x ResNet18) -> {'worth a switch' if light >= KEEP else 'no gain, keep every BN'}")
    best = "channels_last" if keep_cl else "contiguous"
    speed = ratio(("pepx_resnet", best), ("resnet18", best))
    print(f"PEPX-ResNet / ResNet18 training speed ({best}): {speed:.2f}x "
          f"(goal {GOAL:.2f}x: {'met' if speed >= GOAL else 'not met'})")


if __name__ == "__main__":
    main()
