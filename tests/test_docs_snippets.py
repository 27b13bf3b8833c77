"""Every ```python and ```bash snippet of README.md and docs/*.md, checked as written, so that a doc can no
longer drift from the code.

- python: executed in a fresh folder that holds the two films the docs name (`film.png`, `scan.dcm`);
  the ones in `IMPORTS_ONLY` (they train for minutes, or need a cluster) run their imports only.
- bash: each `pepx ...` command is parsed by pepx's own argparse parser (a sub-command or flag that does not
  exist fails), `pepx train`'s key=value overrides are applied to a `TrainConfig` (a config key that does not
  exist fails), and a script the snippet runs (`python X.py`, `scripts/X.sh`) must exist. Nothing is run.
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakes.images import make_dicom, ramp
from pepx.cli import build_parser
from pepx.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Python snippets that train for minutes or need a cluster: only their imports run. Keyed by file and the
#: snippet's first line.
IMPORTS_ONLY = {
    ("docs/evaluation.md", "import pandas as pd"): "trains the smoke grid (3 epochs x 12 runs: minutes)",
    ("docs/training.md", "from pepx.data import load_split"): "trains ResNet18 for 5 epochs (minutes)",
    ("docs/cluster.md", "from pepx.experiments import get_profile"):
        "needs a running Ray cluster (and trains the 5-fold grid: hours)",
}
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```", re.S | re.M)


def _snippets(lang: str) -> list[tuple[str, int, str]]:
    out = []
    for path in DOCS:
        text = path.read_text()
        for m in BLOCK.finditer(text):
            if m.group(1) == lang:
                out.append((str(path.relative_to(ROOT)), text[: m.start()].count("\n") + 2, m.group(2)))
    return out


PYTHON, BASH = _snippets("python"), _snippets("bash")


def test_the_docs_have_snippets() -> None:
    assert len(PYTHON) >= 7 and len(BASH) >= 20
    firsts = {(name, code.splitlines()[0]) for name, _, code in PYTHON}
    assert set(IMPORTS_ONLY) <= firsts, "a IMPORTS_ONLY entry names no snippet: update the list"


@pytest.fixture
def films(tmp_path, monkeypatch) -> Path:
    """A fresh working folder with the files the snippets name, and the shipped bundle's cache kept apart."""
    monkeypatch.chdir(tmp_path)
    yy, xx = np.mgrid[0:96, 0:80]
    lungs = ((((xx - 25) / 14.0) ** 2 + ((yy - 48) / 32.0) ** 2 < 1) |
             (((xx - 55) / 14.0) ** 2 + ((yy - 48) / 32.0) ** 2 < 1))
    Image.fromarray(np.where(lungs, 60, 200).astype(np.uint8)).save(tmp_path / "film.png")
    make_dicom(tmp_path / "scan.dcm", ramp(64, 48, top=4095))
    return tmp_path


@pytest.mark.parametrize("name,line,code", PYTHON, ids=[f"{n}:{ln}" for n, ln, _ in PYTHON])
def test_python_snippet_runs(name, line, code, films) -> None:
    tree = ast.parse(code, filename=f"{name}:{line}")
    reason = IMPORTS_ONLY.get((name, code.splitlines()[0]))
    if reason:  # imports only: the names it uses must still exist
        tree.body = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    exec(compile(tree, f"{name}:{line}", "exec"), {"__name__": "__snippet__"})
    if reason:
        pytest.skip(f"{name}:{line}: imports only, {reason}")


def _commands(code: str) -> list[list[str]]:
    """The simple commands of a bash snippet (comments dropped, `\\` lines joined, split at && || ; |)."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        command: list[str] = []
        for word in [*words, ";"]:
            if word in ("&&", "||", ";", "|"):
                if command:
                    out.append(command)
                command = []
            else:
                command.append(word)
    return out


def _check_command(words: list[str]) -> str:
    """Check one command; what kind it was."""
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value prefixes
        words = words[1:]
    if words[0] == "pepx":
        args = build_parser().parse_args(words[1:])  # exits 2 (SystemExit) on an unknown command or flag
        if args.command == "train":
            TrainConfig().with_overrides(args.overrides)  # ConfigError for a key TrainConfig lacks
        return "pepx"
    if words[0] == "python" and words[1].endswith(".py"):
        assert (ROOT / words[1]).is_file(), f"{words[1]} does not exist"
        return "script"
    if words[0].startswith("scripts/"):
        assert (ROOT / words[0]).is_file(), f"{words[0]} does not exist"
        return "script"
    return "other"  # pip, curl, pytest: not pepx's to check


@pytest.mark.parametrize("name,line,code", BASH, ids=[f"{n}:{ln}" for n, ln, _ in BASH])
def test_bash_snippet_parses(name, line, code) -> None:
    kinds = [_check_command(words) for words in _commands(code)]
    assert kinds, f"{name}:{line}: no command"


def test_bash_checks_catch_drift() -> None:
    with pytest.raises(SystemExit):
        _check_command(["pepx", "predict", "film.png", "--no-such-flag"])
    with pytest.raises(Exception, match="no_such_key"):
        _check_command(["pepx", "train", "no_such_key=1"])
    assert _commands("pepx a b && pepx c   # note\\\n") == [["pepx", "a", "b"], ["pepx", "c"]]
