"""Console plumbing of the `pepx` command line: the argument parser with the CLI's error contract, argument
types, and pepx's log lines on stdout while a command runs (the commands themselves live in `pepx.cli`)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn


class CLIParser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: one line on stderr, exit status 2 (no usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")

    def format_help(self) -> str:
        """Help text; an `epilog` given as a function is built now (it may import slow modules)."""
        if callable(self.epilog):
            self.epilog = self.epilog()
        return super().format_help()


def int_range(minimum: int, maximum: int | None = None):
    """An argparse type: an integer >= `minimum` (and <= `maximum`)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def float_range(minimum: float, strict: bool, maximum: float | None = None):
    """An argparse type: a finite number > `minimum` (>= when not `strict`), and <= `maximum`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (value > minimum if strict else value >= minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum:g}, got {text}")
        if maximum is not None and not value <= maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum:g}, got {text}")
        return value

    parse.__name__ = f"number {'>' if strict else '>='} {minimum:g}"
    return parse


positive_float, non_negative_float = float_range(0.0, strict=True), float_range(0.0, strict=False)


POSITIVE, NON_NEGATIVE = int_range(1), int_range(0)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def add_grid_arguments(p: argparse.ArgumentParser) -> None:
    """The options shared by `pepx reproduce` and `pepx recipe`: where the runs train, and --report-only."""
    p.add_argument("--jobs", type=int_range(1, 256), default=None,
                   help="runs trained at once (local: processes with cores/JOBS threads each, default 1; "
                        "ray, slurm: default as many as the cluster takes)")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: write the report from the complete run folders in --out")
    g = p.add_argument_group("executor (docs/cluster.md)")
    g.add_argument("--executor", choices=["local", "ray", "slurm"], default="local",
                   help="local (this machine, default), ray (Ray tasks: pepx[ray]) or slurm (SLURM jobs "
                        "through submitit: pepx[slurm])")
    g.add_argument("--address", help="ray: an existing cluster: auto or HOST:PORT (default: start one here)")
    g.add_argument("--cpus-per-run", type=POSITIVE, help="ray, slurm: CPUs of each run, its torch threads "
                   "(default 1)")
    g.add_argument("--gpus-per-run", type=NON_NEGATIVE, help="ray, slurm: GPUs of each run (default 0)")
    g.add_argument("--partition", help="slurm: the partition (default: the cluster's)")
    g.add_argument("--time-min", type=POSITIVE, help="slurm: each job's time limit in minutes (default 240; "
                   "a run reaching it is requeued and resumes)")
    g.add_argument("--sbatch", nargs="+", type=_key_value, metavar="KEY=VALUE",
                   help="slurm: further sbatch options, e.g. account=lab mem=32G qos=high")


def grid_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of `pepx.experiments.executors.make_executor` from `add_grid_arguments`'s."""
    return {"name": args.executor, "jobs": args.jobs, "address": args.address,
            "cpus_per_run": args.cpus_per_run, "gpus_per_run": args.gpus_per_run, "partition": args.partition,
            "time_min": args.time_min, "sbatch": dict(args.sbatch) if args.sbatch else None}


@contextmanager
def log_to_stdout() -> Iterator[None]:
    """pepx's log lines (per-epoch results, data warnings) go to stdout while a command runs: stderr carries
    only the one-line error."""
    logger = logging.getLogger("pepx")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
