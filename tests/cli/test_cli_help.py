"""`pepx --version`, `pepx --help`'s examples, `pepx train --help`'s config keys, help on every option."""

from __future__ import annotations

import argparse
import re
import shlex

import pytest

from pepx import __version__
from pepx.cli import build_parser, main
from pepx.cli_help import EXAMPLES, field_docs
from pepx.training.config import TrainConfig


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"pepx {__version__}"


def test_help_shows_five_examples_that_parse(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    shown = [line.split("#")[0].strip() for line in out.splitlines() if line.startswith("  pepx ")]
    assert len(shown) == 5 and shown == [command for command, _ in EXAMPLES]
    assert "handler" not in out and "parser" not in out  # about pepx, not about its code
    for command in shown:  # real sub-commands and flags: argparse would exit 2 otherwise
        args = build_parser().parse_args(shlex.split(command)[1:])
        assert callable(args.func)


def test_train_help_lists_every_config_key_with_default_and_meaning(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # wrapped lines joined
    docs = field_docs(TrainConfig)
    defaults = TrainConfig()
    for name in TrainConfig.model_fields:
        assert name in docs, f"TrainConfig's docstring does not describe {name}"
        assert re.search(rf"\b{name}=\S", out), name
        assert docs[name][:30] in out, name
    assert "epochs=10" in out and "model=pepx_resnet" in out and defaults.epochs == 10
    assert "lr=0.001" in out and "cache_dir=null" in out and "eval_splits=[val,test]" in out
    assert "image_size=128: input side in pixels" in out


def test_field_docs_reads_grouped_and_inline_entries() -> None:
    docs = field_docs(TrainConfig)
    assert docs["n_test"] == docs["split_seed"] == "images per class of the split drawn here, and its seed."
    assert docs["in_chans"].startswith("input channels")  # second entry of `image_size: ...; in_chans: ...`
    assert docs["domain_adversary_weight"].startswith("the reversed gradient's final scale")


def _options(parser: argparse.ArgumentParser, path: str):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _options(child, f"{path} {name}")
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield path, "/".join(action.option_strings) or action.dest, action.help


def test_every_option_of_every_command_has_help() -> None:
    options = list(_options(build_parser(), "pepx"))
    assert len(options) > 100
    missing = [f"{path} {name}" for path, name, text in options if not text]
    assert not missing
