"""Wall time of a grid one run at a time against ``--jobs N`` at once, and on Ray against this machine's pool.

    python benchmarks/grid.py --quick                     # smoke grid on the synthetic set, ~1-2 min
    python benchmarks/grid.py --profile cpu-cv --cv 5 --folds 0 1 --epochs 2 --jobs 1 2   # cxr-real
    python benchmarks/grid.py --profile cpu-cv --cv 5 --folds 0 --epochs 2 --models pepx_resnet resnet18 \\
        --executor local ray --jobs 2                     # Ray's overhead on 4 real runs (goal: <= 5 %)
    python benchmarks/grid.py --quick --runs 2 --epochs 1 --executor local ray --jobs 2   # a check, ~1 min

Each (``--executor``, ``--jobs``) pair trains the same runs (the grid's cells on ``--folds`` of a ``--cv``
split; ``--runs N``: the first N) into a fresh folder. Locally, runs with ``--jobs 1`` use the profile's
threads (None = all cores), with N jobs ``cores // N`` each; on Ray each run asks for the same number of
CPUs (its threads), and at most N run at once, on a local cluster of this machine's cores (or
``--address``). Prints wall seconds, images per second over the whole grid, the speed-up against the first
row and the overhead against ``local`` at the same ``--jobs``; the Ray cluster's start is printed apart
(``start_s``: paid once per cluster, not per grid). Checks that every setting predicted the same classes
(identical probabilities when the thread counts agree). Image decoding is warmed into the cache first, so
it is not timed. Run it on an idle machine: other jobs on the cores swamp a few per cent of overhead.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from pepx.data import CXRDataset, load_source
from pepx.experiments import get_profile
from pepx.experiments.cv import prepare_cv, split_of
from pepx.experiments.executors import make_executor
from pepx.experiments.grid import plan, read_predictions, train_runs
from pepx.experiments.parallel import threads_per_job


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="smoke")
    p.add_argument("--data", default=None)
    p.add_argument("--cv", type=int, default=3)
    p.add_argument("--folds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--models", nargs="+", default=None)
    p.add_argument("--losses", nargs="+", default=None)
    p.add_argument("--runs", type=int, default=None, help="train only the first N runs of the grid")
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--executor", nargs="+", choices=["local", "ray"], default=["local"])
    p.add_argument("--address", default=None, help="ray: an existing cluster (default: a local one)")
    p.add_argument("--quick", action="store_true", help="synthetic set, 2 epochs, 3-fold CV, fold 0")
    args = p.parse_args(argv)
    if args.quick:
        args.profile, args.data = "smoke", args.data or "synthetic:n_per_class=60,size=64"
        args.epochs = args.epochs or 2
    profile = get_profile(args.profile, data=args.data, epochs=args.epochs, seeds=1, models=args.models,
                          losses=args.losses)
    runs = plan(profile.models, profile.losses, [0], args.folds)[:args.runs]
    root = Path(tempfile.mkdtemp(prefix="pepx-grid-bench-"))
    manifest = load_source(profile.data).manifest
    CXRDataset(manifest, image_size=profile.image_size)  # decode once into the cache: not timed
    cores = os.cpu_count() or 1
    print(f"profile {profile.name}, {profile.data}, {len(runs)} runs ({len(profile.models)} models x "
          f"{len(profile.losses)} losses x folds {args.folds} of {args.cv}), {profile.epochs} epochs, "
          f"{cores} cores")
    print(f"{'executor':>8} {'jobs':>4} {'threads/run':>11} {'start_s':>7} {'wall_s':>8} {'img/s':>8} "
          f"{'speed-up':>8} {'vs local':>8}")
    first, reference, walls = None, None, {}
    for name in sorted(set(args.executor), key=["local", "ray"].index):  # local first: the baseline
        for jobs in args.jobs:
            out = root / f"{name}-jobs{jobs}"
            folded = prepare_cv(profile, out, args.cv)
            threads = threads_per_job(jobs, profile.num_threads)
            start = time.perf_counter()
            if name == "ray":  # as many CPUs a run as its local threads, at most ``jobs`` at once
                cpus = threads_per_job(jobs, None) if jobs > 1 else (profile.num_threads or cores)
                executor = make_executor("ray", jobs=jobs, address=args.address, cpus_per_run=cpus).open()
                threads = executor.threads(profile.num_threads)
            else:
                executor = make_executor("local", jobs=jobs)
            started = time.perf_counter()
            folders = train_runs(profile, out, runs, split_of(out, folded), executor=executor,
                                 log=lambda _: None)
            wall = walls[name, jobs] = time.perf_counter() - started
            executor.close()
            images = sum(len(pd.read_csv(split_of(out, folded)(r)).query("split == 'train'")) for r in runs)
            first = first or wall
            base = walls.get(("local", jobs))
            versus = f"{wall / base:>7.3f}x" if base else f"{'-':>8}"
            print(f"{name:>8} {jobs:>4} {threads or 'default'!s:>11} {started - start:>7.1f} {wall:>8.1f} "
                  f"{images * profile.epochs / wall:>8.1f} {first / wall:>7.2f}x {versus}", flush=True)
            preds = {r.name: read_predictions(f)["y_pred"].tolist() for r, f in folders.items()}
            if reference is None:
                reference = preds
            elif preds != reference:
                print(f"     note: {name} --jobs {jobs} predicted some classes differently "
                      "(other thread count)")
    for (name, jobs), wall in walls.items():
        if name != "local" and ("local", jobs) in walls:
            extra = 100 * (wall / walls["local", jobs] - 1)
            print(f"{name} at --jobs {jobs}: {extra:+.1f} % wall time against local on the same runs "
                  f"(goal: <= +5 %) {'met' if extra <= 5 else 'NOT met'}")
    print(f"(run folders under {root})")


if __name__ == "__main__":
    main()
