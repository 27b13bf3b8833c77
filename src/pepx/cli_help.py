"""The help texts of `pepx` longer than a line: what pepx is, with five commands to start from, and the
`pepx train` config keys, generated from `TrainConfig` itself (its fields, their defaults and the `Args:`
section of its docstring), so the help can never list a key the config lacks or miss one it has."""

from __future__ import annotations

import inspect
import re
import textwrap
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import BaseModel

DESCRIPTION = textwrap.fill("Train, evaluate, audit and serve chest X-ray classifiers (normal / non-COVID "
                            "pneumonia / COVID-19): PEPX-ResNet and its baselines. Research use only, not a "
                            "medical device.", width=100)

#: `pepx --help`'s examples: (command, what it does). Each must parse (tests/cli/test_cli_help.py).
EXAMPLES: tuple[tuple[str, str], ...] = (
    ("pepx train --out runs/first epochs=2", "2 epochs on the built-in synthetic films, no download"),
    ("pepx evaluate runs/first", "accuracy, macro-F1, recall per class with 95 % CIs"),
    ("pepx export runs/first --out my-bundle", "a calibrated bundle with its model card"),
    ("pepx predict film.png --model my-bundle --cam cams/", "class, probabilities, Grad-CAM heat map"),
    ("pepx serve --model my-bundle", "a web page and REST API on http://127.0.0.1:8000/"),
)


def examples_epilog() -> str:
    """The `examples:` block of `pepx --help`."""
    width = max(len(command) for command, _ in EXAMPLES) + 2
    lines = [f"  {command:<{width}}# {what}" for command, what in EXAMPLES]
    return "examples:\n" + "\n".join(lines) + "\n\n`pepx COMMAND --help` describes each command."


def _plain(text: str) -> str:
    """Docstring markup (``literal``, `name`) as plain text, on one line."""
    return " ".join(text.replace("``", "").replace("`", "").split())


def field_docs(cls: type[BaseModel]) -> dict[str, str]:
    """Each field of the pydantic model `cls` -> the text its docstring's `Args:` section gives it.

    An entry may name several fields (``n_train, n_test: ...``; they share its text), and one line may hold
    several entries (``image_size: ...; in_chans: ...``). A field the section does not describe is missing
    from the result.
    """
    doc = inspect.getdoc(cls) or ""
    args = _plain(doc.split("Args:", 1)[1]) if "Args:" in doc else ""
    names = sorted(cls.model_fields, key=len, reverse=True)
    name = "(?:" + "|".join(map(re.escape, names)) + ")"
    starts = list(re.finditer(rf"(?:^|(?<=[;.] ))({name}(?:, {name})*): ", args))
    docs: dict[str, str] = {}
    for here, after in zip(starts, [*starts[1:], None], strict=True):
        text = args[here.end():after.start() if after else len(args)].strip().rstrip(";")
        for field in here.group(1).split(", "):
            docs[field] = text
    return docs


def config_keys_epilog(width: int = 110) -> str:
    """`pepx train --help`'s list of every `TrainConfig` key, its default and its meaning."""
    from pepx.training.config import TrainConfig

    defaults = TrainConfig()
    docs = field_docs(TrainConfig)
    groups: dict[str, list[str]] = {}  # one entry per docstring text, its keys in field order
    for name in TrainConfig.model_fields:
        value = getattr(defaults, name)
        groups.setdefault(docs.get(name, "(undocumented)"), []).append(f"{name}={_yaml(value)}")
    lines = ["config keys (key=value after the options, or in --config; default after '='):"]
    for text, keys in groups.items():
        lines.append(textwrap.fill(f"{', '.join(keys)}: {text}", width=width, initial_indent="  ",
                                   subsequent_indent="      "))
    return "\n".join(lines)


def _yaml(value: object) -> str:
    """A default as it would be written on the command line (YAML: null, true, [a, b], {})."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)
