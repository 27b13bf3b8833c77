"""The `pepx` command line: one parser, one small handler per sub-command.

Each handler only parses, calls the library and prints; the work lives in the packages
(`pepx.models`, `pepx.data`, `pepx.training`, `pepx.evaluation`, `pepx.experiments`).
Imports are lazy so that `pepx --help` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


# --------------------------------------------------------------------------- models
def _add_models_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="table of each model's parameters and GFLOPs")
    p.add_argument("--size", type=int, nargs="+", default=[224], help="input sizes (pixels)")
    p.add_argument("--in-chans", type=int, default=1)
    p.add_argument("--num-classes", type=int, default=3)
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier of every model")
    p.set_defaults(func=_cmd_models)


def _cmd_models(args: argparse.Namespace) -> int:
    from pepx.models.summary import format_table, summary_rows

    rows = summary_rows(sizes=tuple(args.size), in_chans=args.in_chans, num_classes=args.num_classes,
                        width=args.width)
    print(f"{args.in_chans}-channel input, {args.num_classes} classes, width {args.width}; "
          "GFLOPs = forward FLOPs of one image (torch.utils.flop_counter; 1 MAC = 2 FLOPs)")
    print(format_table(rows))
    return 0


# --------------------------------------------------------------------------- data
def _add_data_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect and split chest X-ray data sets")
    dsub = p.add_subparsers(dest="data_cmd", required=True)

    pi = dsub.add_parser("inspect", help="counts, decode check, leak and confound report")
    pi.add_argument("source", help="FORMAT:PATH, e.g. csv:data/metadata.csv, covidx:/d, folder:/d, synthetic")
    pi.add_argument("--no-decode", action="store_true", help="skip decoding every image")
    pi.set_defaults(func=_cmd_data_inspect)

    ps = dsub.add_parser("split", help="balanced, patient-disjoint train/val/test split")
    ps.add_argument("source")
    ps.add_argument("--n-train", type=int, default=1000)
    ps.add_argument("--n-test", type=int, default=100)
    ps.add_argument("--n-val", type=int, default=0)
    ps.add_argument("--seed", type=int, default=0)
    ps.add_argument("--out", default="split.csv")
    ps.add_argument("--stratify-source", action="store_true", help="share each split's quota across sources")
    ps.set_defaults(func=_cmd_data_split)


def _cmd_data_inspect(args: argparse.Namespace) -> int:
    from pepx.data.inspect import inspect_source

    # bad files are listed in the report, not an error: exit 0
    print(inspect_source(args.source, decode=not args.no_decode).to_text())
    return 0


def _cmd_data_split(args: argparse.Namespace) -> int:
    from pepx.data import balanced_split, confound_report, leak_check, load_source, save_split

    result = load_source(args.source)
    if result.problems:
        print(f"{result.summary()} (`pepx data inspect` lists them)")
    split = balanced_split(result.manifest, args.n_train, args.n_test, n_val=args.n_val, seed=args.seed,
                           stratify_source=args.stratify_source)
    out = save_split(split, args.out)
    print(f"wrote {out}: " + ", ".join(f"{k}={v}" for k, v in split["split"].value_counts().items()))
    print(leak_check(split).to_markdown() + "\n\n" + confound_report(split).to_markdown())
    return 0


# --------------------------------------------------------------------------- train
def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one model with one loss on a split")
    p.add_argument("--config", help="YAML or TOML config file")
    p.add_argument("--out", help="run folder")
    p.add_argument("--resume", metavar="RUN", help="continue a killed run from its last checkpoint")
    p.add_argument("overrides", nargs="*", help="config overrides key=value, e.g. model=resnet18 epochs=5")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pepx.training import TrainConfig, default_run_dir, fit

    run = Path(args.resume) if args.resume else None
    if run is not None and not (run / "config.yaml").exists():
        raise SystemExit(f"pepx train --resume: {run} has no config.yaml (not a run folder)")
    try:
        base = run / "config.yaml" if run is not None else args.config
        config = (TrainConfig.from_file(base) if base else TrainConfig()).with_overrides(args.overrides)
    except ValueError as err:
        raise SystemExit(f"pepx train: {err}") from None
    out = fit(config, run if run is not None else args.out or default_run_dir(config), resume=run is not None)
    print(f"run folder: {out}")
    return 0


# --------------------------------------------------------------------------- evaluate
def _add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="metrics with bootstrap CIs, per source and age group")
    p.add_argument("run", help="run folder written by `pepx train`")
    p.add_argument("--data", help="data SOURCE (default: the run's own)")
    p.add_argument("--split", help="split CSV (default: the run's own)")
    p.add_argument("--out", help="report folder (default: RUN/eval)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples of patients (default: 2000)")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pepx.evaluation import evaluate_run

    out = evaluate_run(args.run, data=args.data, split=args.split, out=args.out, n_boot=args.n_boot)
    print(f"report: {out / 'report.md'}")
    return 0


# --------------------------------------------------------------------------- reproduce
def _add_reproduce_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce",
                       help="the paper's grid: 3 networks x 2 losses x seeds, Tables 1-4, Figs 9-10")
    p.add_argument("--data", default=None,
                   help="data SOURCE (default: the profile's; synthetic for smoke, cxr-real for cpu/paper)")
    p.add_argument("--profile", default="smoke",
                   help="smoke (default), cpu, cpu-cv, paper, or a candidate recipe of `pepx recipe` "
                        "(all in pepx/experiments/profiles.py)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the profile's)")
    p.add_argument("--out", default="runs/reproduce")
    p.add_argument("--n-train", type=int, default=None,
                   help="training images per class (default: the profile's; unused with --cv)")
    p.add_argument("--n-test", type=int, default=None,
                   help="test images per class (default: the profile's; unused with --cv)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the profile's)")
    p.add_argument("--models", nargs="+", default=None, help="subset of pepx_resnet resnet18 covidnet")
    p.add_argument("--losses", nargs="+", default=None, help="subset of ce focal")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs trained at once, each in its own process with cores/JOBS threads (default 1)")
    cv = p.add_argument_group("cross-validation (--cv K) and what runs on its folds")
    cv.add_argument("--cv", type=int, default=None, metavar="K",
                    help="K patient-grouped, class-stratified folds over the whole data set; tables from the "
                         "pooled out-of-fold predictions")
    cv.add_argument("--pseudo-test", action="store_true",
                    help="let rows without real patient ids (per-image pseudo ids) be test images")
    cv.add_argument("--ablations", action="store_true",
                    help="also train the PEPX-ResNet ablations (fixed A,B,C; no PEPX; depthwise; on block)")
    cv.add_argument("--leave-source-out", action="store_true",
                    help="also train without each source holding >= 2 classes and test on it")
    cv.add_argument("--lso-models", nargs="+", default=None,
                    help="networks trained per held-out source (default: pepx_resnet resnet18)")
    cv.add_argument("--inner-val", action="store_true",
                    help="score on inner validation folds instead (choose a recipe; test folds untouched)")
    cv.add_argument("--folds", type=int, nargs="+", default=None,
                    help="run only these folds (pilots, recipe search); default: all")
    p.set_defaults(func=_cmd_reproduce)


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from pepx.errors import ConfigError
    from pepx.experiments import reproduce
    from pepx.experiments.cv import reproduce_cv
    from pepx.experiments.external import LSO_MODELS
    from pepx.experiments.reproduce import resolve_profile

    cv_only = {"--pseudo-test": args.pseudo_test, "--ablations": args.ablations,
               "--leave-source-out": args.leave_source_out, "--inner-val": args.inner_val,
               "--folds": args.folds, "--lso-models": args.lso_models}
    if args.cv is None:
        used = [flag for flag, value in cv_only.items() if value]
        if used:
            raise ConfigError(f"{', '.join(used)} need --cv K (the folds they run on)")
        reproduce(args.data, args.profile, args.seeds, args.out, n_train=args.n_train, n_test=args.n_test,
                  epochs=args.epochs, models=args.models, losses=args.losses, jobs=args.jobs)
        return 0
    profile = resolve_profile(args.profile, data=args.data, seeds=args.seeds, n_train=args.n_train,
                              n_test=args.n_test, epochs=args.epochs, models=args.models, losses=args.losses)
    reproduce_cv(profile, args.out, args.cv, pseudo_test=args.pseudo_test, ablations=args.ablations,
                 leave_source_out=args.leave_source_out, lso_models=args.lso_models or LSO_MODELS,
                 inner_val=args.inner_val, folds=args.folds, jobs=args.jobs)
    return 0


# --------------------------------------------------------------------------- recipe
def _add_recipe_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recipe", help="score candidate training recipes on inner validation folds only")
    p.add_argument("--candidates", nargs="+", default=None,
                   help="profiles or candidate recipes (default: every candidate of profiles.RECIPES)")
    p.add_argument("--cv", type=int, default=5, metavar="K", help="folds (default 5)")
    p.add_argument("--folds", type=int, nargs="+", default=None, help="outer folds to run (default: all)")
    p.add_argument("--data", default=None, help="data SOURCE (default: each candidate's)")
    p.add_argument("--epochs", type=int, default=None, help="override every candidate's epochs (pilots)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once (default 1)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--out", default="runs/recipe")
    p.set_defaults(func=_cmd_recipe)


def _cmd_recipe(args: argparse.Namespace) -> int:
    from pepx.experiments.profiles import RECIPES
    from pepx.experiments.recipe import score_recipes

    score_recipes(args.candidates or list(RECIPES), args.out, k=args.cv, folds=args.folds, data=args.data,
                  epochs=args.epochs, jobs=args.jobs, n_boot=args.n_boot)
    return 0


# --------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pepx", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_models_parser, _add_data_parser, _add_train_parser, _add_evaluate_parser,
                _add_reproduce_parser, _add_recipe_parser):
        add(sub)
    return parser


#: Errors that describe bad input (a missing file, an unusable data set, a wrong value): printed as one line.
#: Set PEPX_DEBUG=1 to see the traceback instead.
USER_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, FileExistsError, NotADirectoryError,
                                                 ValueError)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pepx.errors import PepxError

    try:
        return int(args.func(args) or 0)
    except (PepxError, *USER_ERRORS) as err:
        if os.environ.get("PEPX_DEBUG"):
            raise
        print(f"pepx {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
