"""The `pepx` command line: one parser, one small handler per sub-command.

Each handler only parses, calls the library and prints; the work lives in the packages
(`pepx.models`, `pepx.data`, `pepx.training`, `pepx.evaluation`, `pepx.experiments`).
Imports are lazy so that `pepx --help` is instant.

Contract: a result or progress goes to stdout (pepx's log lines included); every error a user can cause
(a `pepx.errors.PepxError`, or a bad command-line argument) is ONE line on stderr naming the thing and the
reason, with exit status 2; `pepx train` stopped by SIGTERM / SIGINT exits 143 / 130 after one such line. Any
other exception is a bug and keeps its traceback. `PEPX_DEBUG=1` shows the traceback of a user error too.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from pepx import cli_help, cli_serving, console
from pepx.checks import MAX_IMAGE_SIZE, MAX_WIDTH
from pepx.cli_help import config_keys_epilog
from pepx.console import NON_NEGATIVE, POSITIVE, CLIParser, float_range, int_range, log_to_stdout


# --------------------------------------------------------------------------- models
class RegisteredModels:
    """The registered networks' names, for help text: read from the registry (which imports torch) only
    when the help is printed, so that building the parser stays fast."""

    def __str__(self) -> str:
        from pepx.models import model_infos

        return " ".join(info.name for info in model_infos())


def _add_models_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="table of each model's parameters and GFLOPs")
    p.add_argument("--size", type=int_range(1, MAX_IMAGE_SIZE), nargs="+", default=[224],
                   help=f"input sizes (pixels, 1-{MAX_IMAGE_SIZE})")
    p.add_argument("--in-chans", type=int_range(1, 16), default=1, help="input channels (default: 1, grey)")
    p.add_argument("--num-classes", type=int_range(1, 10_000), default=3, help="output classes (default: 3)")
    p.add_argument("--width", type=float_range(0.0, True, MAX_WIDTH), default=1.0,
                   help=f"channel multiplier of every model (0-{MAX_WIDTH:g})")
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
    ps.add_argument("source", help="FORMAT:PATH, as for `pepx data inspect`")
    ps.add_argument("--n-train", type=POSITIVE, default=1000, help="train images per class (default 1000)")
    ps.add_argument("--n-test", type=NON_NEGATIVE, default=100, help="test images per class (default: 100)")
    ps.add_argument("--n-val", type=NON_NEGATIVE, default=0, help="validation images per class (default: 0)")
    ps.add_argument("--seed", type=NON_NEGATIVE, default=0, help="seed of the draw (default: 0)")
    ps.add_argument("--out", default="split.csv", help="split CSV to write (default: split.csv)")
    ps.add_argument("--stratify-source", action="store_true", help="share each split's quota across sources")
    ps.set_defaults(func=_cmd_data_split)


def _cmd_data_inspect(args: argparse.Namespace) -> int:
    from pepx.data.inspect import inspect_source

    # bad files are listed in the report, not an error: exit 0
    print(inspect_source(args.source, decode=not args.no_decode).to_text())
    return 0


def _cmd_data_split(args: argparse.Namespace) -> int:
    from pepx.data import balanced_split, confound_report, leak_check, load_source, save_split
    from pepx.data.split import check_split_out

    result = load_source(args.source)
    check_split_out(args.out, args.source, result.manifest)
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
    p = sub.add_parser("train", help="train one model with one loss on a split",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=config_keys_epilog)
    p.add_argument("--config", help="YAML or TOML config file")
    p.add_argument("--out", help="run folder")
    p.add_argument("--resume", metavar="RUN", help="continue a killed run from its last checkpoint")
    p.add_argument("overrides", nargs="*", help="config overrides key=value, e.g. model=resnet18 epochs=5")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from pepx.errors import ConfigError
    from pepx.training import RunLayout, TrainConfig  # no Lightning: a bad config fails fast

    if args.resume and (args.config or args.out):
        raise ConfigError("--resume RUN continues RUN with its own config.yaml: drop --config and --out")
    layout = RunLayout(args.resume).require() if args.resume else None
    base = layout.config if layout is not None else args.config
    config = (TrainConfig.from_file(base) if base else TrainConfig()).with_overrides(args.overrides)
    from pepx.training import default_run_dir, fit

    folder = layout.root if layout is not None else args.out or default_run_dir(config)
    out = fit(config, folder, resume=layout is not None)
    print(f"run folder: {out}")
    return 0


# --------------------------------------------------------------------------- evaluate
def _add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="metrics with bootstrap CIs, per source and age group")
    p.add_argument("run", help="run folder written by `pepx train`")
    p.add_argument("--data", help="data SOURCE (default: the run's own)")
    p.add_argument("--split", help="split CSV (default: the run's own)")
    p.add_argument("--out", help="report folder (default: RUN/eval)")
    p.add_argument("--n-boot", type=POSITIVE, default=2000,
                   help="bootstrap resamples of patients (default: 2000)")
    p.add_argument("--weights", type=POSITIVE, metavar="N",
                   help="score weights/epoch_N (default: the final weights, or the newest epoch's of an "
                        "incomplete run)")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pepx.evaluation.headline import read_headline
    from pepx.training import evaluate_run

    out = evaluate_run(args.run, data=args.data, split=args.split, out=args.out, n_boot=args.n_boot,
                       epoch=args.weights)
    print("\n".join(read_headline(out)))
    print(f"report: {out / 'report.md'}")
    return 0


# --------------------------------------------------------------------------- reproduce
def _add_reproduce_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce",
                       help="the paper's grid: 3 networks x 2 losses x seeds, Tables 1-4, Figs 9-10")
    p.add_argument("--data", default=None,
                   help="data SOURCE (default: the profile's; synthetic for smoke, cxr-real for cpu/paper)")
    p.add_argument("--profile", default="smoke",
                   help="smoke (default), cpu, cpu-cv, cpu-cv2, paper, or a candidate recipe of "
                        "`pepx recipe` (all in pepx/experiments/profiles.py)")
    p.add_argument("--seeds", type=int_range(1, 1000), default=None, help="seeds (default: the profile's)")
    p.add_argument("--out", default="runs/reproduce", help="folder of the runs and report (default: "
                   "runs/reproduce)")
    p.add_argument("--n-train", type=POSITIVE, default=None,
                   help="training images per class (default: the profile's; unused with --cv)")
    p.add_argument("--n-test", type=POSITIVE, default=None,
                   help="test images per class (default: the profile's; unused with --cv)")
    p.add_argument("--epochs", type=int_range(1, 100000), default=None, help="epochs (default: profile)")
    models = p.add_argument("--models", nargs="+", default=None, help="subset of %(networks)s")
    models.networks = RegisteredModels()  # type: ignore[attr-defined]
    p.add_argument("--losses", nargs="+", default=None, help="subset of ce focal")
    console.add_grid_arguments(p)
    cv = p.add_argument_group("cross-validation (--cv K) and what runs on its folds")
    cv.add_argument("--cv", type=POSITIVE, default=None, metavar="K",
                    help="K patient-grouped, class-stratified folds over the whole data set; tables from the "
                         "pooled out-of-fold predictions")
    cv.add_argument("--pseudo-test", action="store_true",
                    help="let rows without real patient ids (per-image pseudo ids) be test images")
    cv.add_argument("--ablations", nargs="*", default=None, metavar="NAME",
                    help="also train PEPX-ResNet ablations: all (fixed-abc no-pepx depthwise pepx-on-block), "
                         "or the ones named, in that order")
    cv.add_argument("--mitigations", nargs="*", default=None, metavar="NAME",
                    help="also train PEPX-ResNet with shortcut mitigations: each alone when bare, or "
                         "those named (hist-eq source-balanced adversarial acquisition-aug; a+b combines "
                         "them; unmitigated turns all off)")
    cv.add_argument("--leave-source-out", action="store_true",
                    help="also train without each source holding >= 2 classes and test on it")
    cv.add_argument("--lso-models", nargs="+", default=None,
                    help="networks trained per held-out source (default: pepx_resnet resnet18)")
    cv.add_argument("--lso-sources", nargs="+", default=None, help="sources held out (default: every one "
                    "with >= 2 classes)")
    cv.add_argument("--lso-variants", nargs="+", default=None, metavar="VARIANT",
                    help="mitigation variants also trained per held-out source (e.g. unmitigated)")
    cv.add_argument("--inner-val", action="store_true",
                    help="score on inner validation folds instead (choose a recipe; test folds untouched)")
    cv.add_argument("--folds", type=int, nargs="+", default=None,
                    help="run only these folds (pilots, recipe search); default: all")
    p.set_defaults(func=_cmd_reproduce)


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from pepx.errors import ConfigError
    from pepx.experiments import reproduce
    from pepx.experiments.ablations import ablation_names
    from pepx.experiments.cv import reproduce_cv
    from pepx.experiments.executors import make_executor
    from pepx.experiments.external import LSO_MODELS
    from pepx.experiments.mitigations import mitigation_names
    from pepx.experiments.reproduce import resolve_profile

    cv_only = {"--pseudo-test": args.pseudo_test, "--ablations": args.ablations is not None,
               "--mitigations": args.mitigations is not None, "--leave-source-out": args.leave_source_out,
               "--inner-val": args.inner_val, "--folds": args.folds, "--lso-models": args.lso_models,
               "--lso-sources": args.lso_sources, "--lso-variants": args.lso_variants}
    if args.cv is None:
        used = [flag for flag, value in cv_only.items() if value]
        if used:
            raise ConfigError(f"{', '.join(used)} need --cv K (the folds they run on)")
        with make_executor(**console.grid_options(args)) as executor:
            reproduce(args.data, args.profile, args.seeds, args.out, n_train=args.n_train, n_test=args.n_test,
                      epochs=args.epochs, models=args.models, losses=args.losses, executor=executor,
                      report_only=args.report_only)
        return 0
    profile = resolve_profile(args.profile, data=args.data, seeds=args.seeds, n_train=args.n_train,
                              n_test=args.n_test, epochs=args.epochs, models=args.models, losses=args.losses)
    with make_executor(**console.grid_options(args)) as executor:
        reproduce_cv(profile, args.out, args.cv, pseudo_test=args.pseudo_test,
                     ablations=[] if args.ablations is None else ablation_names(args.ablations),
                     mitigations=[] if args.mitigations is None else mitigation_names(args.mitigations),
                     leave_source_out=args.leave_source_out, lso_models=args.lso_models or LSO_MODELS,
                     lso_sources=args.lso_sources,
                     lso_variants=["", *mitigation_names(args.lso_variants)] if args.lso_variants else [""],
                     inner_val=args.inner_val, folds=args.folds, executor=executor,
                     report_only=args.report_only)
    return 0


# --------------------------------------------------------------------------- recipe
def _add_recipe_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recipe", help="score candidate training recipes on inner validation folds only")
    p.add_argument("--candidates", nargs="+", default=None,
                   help="profiles or candidate recipes (default: every candidate of profiles.RECIPES)")
    p.add_argument("--cv", type=POSITIVE, default=5, metavar="K", help="folds (default 5)")
    p.add_argument("--folds", type=int, nargs="+", default=None, help="outer folds to run (default: all)")
    p.add_argument("--data", default=None, help="data SOURCE (default: each candidate's)")
    p.add_argument("--epochs", type=int_range(1, 100_000), default=None,
                   help="override every candidate's epochs (pilots)")
    console.add_grid_arguments(p)
    p.add_argument("--n-boot", type=POSITIVE, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--out", default="runs/recipe", help="runs and scores (default: runs/recipe)")
    p.set_defaults(func=_cmd_recipe)


def _cmd_recipe(args: argparse.Namespace) -> int:
    from pepx.experiments.executors import make_executor
    from pepx.experiments.profiles import RECIPES
    from pepx.experiments.recipe import score_recipes

    with make_executor(**console.grid_options(args)) as executor:
        score_recipes(args.candidates or list(RECIPES), args.out, k=args.cv, folds=args.folds, data=args.data,
                      epochs=args.epochs, n_boot=args.n_boot, executor=executor, report_only=args.report_only)
    return 0


# --------------------------------------------------------------------------- audit
def _add_audit_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="shortcut probes of a run, CV folder or data set")
    p.add_argument("target", help="run folder, `pepx reproduce --cv` folder, or data SOURCE (image probes)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="settings",
                   help="probe settings (pepx.probes.ProbeSettings), e.g. epochs=4 equalize=[none,hist]")
    p.add_argument("--probes", nargs="+", help="source processing features blanked invariance (default: all "
                   "the target allows)")
    p.add_argument("--model-probes-only", action="store_true", help="skip the image-only probes (source, "
                   "processing: the slow part, the same for every run of one data set)")
    p.add_argument("--cell", help="MODEL+LOSS of a --cv folder (default: pepx_resnet+focal)")
    p.add_argument("--variant", default="", help="ablation or mitigation variant of its runs, e.g. hist-eq")
    p.add_argument("--compare", metavar="VARIANT", help="a --cv folder: also probe this variant's runs "
                   "(`default`: the profile's recipe) and set both side by side with paired differences")
    p.add_argument("--out", help="report folder (default: TARGET/audit, audit-VARIANT, audit-vs-OTHER; "
                   "runs/audit for a data source)")
    p.set_defaults(func=_cmd_audit)


def _cmd_audit(args: argparse.Namespace) -> int:
    from pepx.errors import ConfigError
    from pepx.probes import MODEL_PROBES, ProbeSettings, audit

    if args.model_probes_only and args.probes:
        raise ConfigError("--model-probes-only: give it or --probes, not both")
    settings = ProbeSettings().with_overrides(args.settings)
    probes = list(MODEL_PROBES) if args.model_probes_only else args.probes
    report = audit(args.target, args.out, probes, settings, cell=args.cell, variant=args.variant,
                   compare=args.compare)
    print("\n".join(report.lines()))
    return 0


# --------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    from pepx import __version__

    parser = CLIParser(prog="pepx", description=cli_help.DESCRIPTION, epilog=cli_help.examples_epilog(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"pepx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_models_parser, _add_data_parser, _add_train_parser, _add_evaluate_parser,
                _add_reproduce_parser, _add_recipe_parser, cli_serving.add_parsers, _add_audit_parser):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pepx.errors import PepxError

    try:
        with log_to_stdout():
            return int(args.func(args) or 0)
    except PepxError as err:
        if os.environ.get("PEPX_DEBUG"):
            raise
        message = " ".join(str(err).split()) or type(err).__name__  # one line, whatever the message holds
        print(f"pepx {args.command}: error: {message}", file=sys.stderr)
        return err.exit_status
    except KeyboardInterrupt:  # Ctrl-C outside training's own handling (e.g. while reading data)
        print(f"pepx {args.command}: interrupted (SIGINT)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
