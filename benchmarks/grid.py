"""Wall time of a grid trained one run at a time against ``--jobs N`` runs at once (`pepx reproduce --jobs`).

    python benchmarks/grid.py --quick                     # smoke grid on the synthetic set, ~1-2 min
    python benchmarks/grid.py --profile cpu-cv --cv 5 --folds 0 1 --epochs 2 --jobs 1 2   # cxr-real

Each ``--jobs`` value trains the same runs (the grid's cells on ``--folds`` of a ``--cv`` split) into a fresh
folder; runs with ``--jobs 1`` use the profile's threads (None = all cores), with N jobs ``cores // N`` each.
Prints wall seconds, images per second over the whole grid and the speed-up against the first ``--jobs``
value, and checks that every setting predicted the same classes (identical probabilities when the thread
counts agree). Image decoding is warmed into the cache first, so it is not timed.
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
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--quick", action="store_true", help="synthetic set, 2 epochs, 3-fold CV, fold 0")
    args = p.parse_args(argv)
    if args.quick:
        args.profile, args.data, args.epochs = "smoke", args.data or "synthetic:n_per_class=60,size=64", 2
    profile = get_profile(args.profile, data=args.data, epochs=args.epochs, seeds=1, models=args.models,
                          losses=args.losses)
    runs = plan(profile.models, profile.losses, [0], args.folds)
    root = Path(tempfile.mkdtemp(prefix="pepx-grid-bench-"))
    manifest = load_source(profile.data).manifest
    CXRDataset(manifest, image_size=profile.image_size)  # decode once into the cache: not timed
    print(f"profile {profile.name}, {profile.data}, {len(runs)} runs ({len(profile.models)} models x "
          f"{len(profile.losses)} losses x folds {args.folds} of {args.cv}), {profile.epochs} epochs, "
          f"{os.cpu_count()} cores")
    print(f"{'jobs':>4} {'threads/run':>11} {'wall_s':>8} {'img/s':>8} {'speed-up':>8}")
    first, reference = None, None
    for jobs in args.jobs:
        out = root / f"jobs{jobs}"
        folded = prepare_cv(profile, out, args.cv)
        start = time.perf_counter()
        folders = train_runs(profile, out, runs, split_of(out, folded), n_jobs=jobs, log=lambda _: None)
        wall = time.perf_counter() - start
        images = sum(len(pd.read_csv(split_of(out, folded)(r)).query("split == 'train'")) for r in runs)
        first = first or wall
        threads = threads_per_job(jobs, profile.num_threads) or "default"
        print(f"{jobs:>4} {threads!s:>11} {wall:>8.1f} {images * profile.epochs / wall:>8.1f} "
              f"{first / wall:>7.2f}x", flush=True)
        preds = {r.name: read_predictions(f)["y_pred"].tolist() for r, f in folders.items()}
        if reference is None:
            reference = preds
        elif preds != reference:
            print(f"     note: --jobs {jobs} predicted some classes differently (other thread count)")
    print(f"(run folders under {root})")


if __name__ == "__main__":
    main()
