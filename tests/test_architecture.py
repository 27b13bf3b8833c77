"""Architecture (issue 9, items 13 and 14): imports point down the layers of docs/interfaces.md and sit at
module top; public constructors document every argument in an `Args:` block; factories hide nothing."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pepx.data import CXRDataset
from pepx.losses import FocalLoss
from pepx.models import COVIDNet, PEPXResNet, ResNet, list_models, model_factory
from pepx.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "pepx"
CORE_MODULES = {"__init__", "errors", "markdown", "checks", "console", "fileio", "settings_errors"}
#: Lazy imports allowed outside cli.py: experiments/ is being rewritten on another branch (issue 10).
LAZY_ALLOWED: set[str] = set()


def layers() -> dict[str, int]:
    """Package -> layer number, read from the `layers` block of docs/interfaces.md."""
    text = (ROOT / "docs" / "interfaces.md").read_text()
    block = text.split("<!-- layers", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    out = {}
    for line in block.strip().splitlines():
        number, names = re.match(r"(\d+)\s+(.*)", line).groups()
        for name in names.split("#", 1)[0].split():
            out[name] = int(number)
    return out


def package_of(module: str) -> str:
    """``pepx.training.run`` -> ``training``; ``pepx.errors`` -> ``core``; ``pepx.cli``, ``pepx.cli_serving``
    (the command line's modules: ``cli*.py``) -> ``cli``."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in CORE_MODULES:
        return "core"
    return "cli" if len(parts) == 2 and parts[1].startswith("cli") else parts[1]


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def imported(module: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported pepx module, line, inside a function) for every import of ``path``."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def in_function(node: ast.AST) -> bool:
        while node in parents:
            node = parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return True
        return False

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: len(module.split(".")) - node.level + (path.name == "__init__.py")]
                names = [".".join([*base, node.module] if node.module else base)]
            else:
                names = [node.module or ""]
        else:
            continue
        found += [(n, node.lineno, in_function(node)) for n in names]
    return found


def test_the_layer_block_names_every_package():
    known = layers()
    assert known["core"] == 0 and known["cli"] == max(known.values())
    packages = {package_of(m) for m, _ in modules()}
    assert packages <= set(known), f"packages missing from docs/interfaces.md: {packages - set(known)}"


def test_imports_point_down_the_layers():
    known = layers()
    wrong = []
    for module, path in modules():
        own = package_of(module)
        for target, line, _ in imported(module, path):
            if target != "pepx" and not target.startswith("pepx."):
                continue
            other = package_of(target)
            if other != own and known[other] >= known[own]:
                wrong.append(f"{path.relative_to(SRC)}:{line} ({own}, layer {known[own]}) imports {target} "
                             f"({other}, layer {known[other]})")
    assert wrong == []


def test_imports_sit_at_module_top_except_in_cli():
    lazy = [f"{path.relative_to(SRC)}:{line} imports {target}" for module, path in modules()
            for target, line, inside in imported(module, path)
            if inside and package_of(module) != "cli"
            and path.relative_to(SRC).as_posix() not in LAZY_ALLOWED]
    assert lazy == []


#: What the inference package must never load: training code and its engine (issue 19: `serving` sits below
#: `training` in the layers; run -> bundle code lives in `pepx.release`).
SERVING_FORBIDDEN = ("lightning", "pytorch_lightning", "pepx.training", "pepx.experiments", "pepx.release")


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in SERVING_FORBIDDEN)


def serving_modules() -> list[tuple[str, Path]]:
    return [(m, p) for m, p in modules() if package_of(m) == "serving"]


def test_serving_files_never_import_training_or_lightning():
    """Directly: no import statement of a `pepx.serving` file names lightning or pepx.training (or the
    packages above it), at module top or inside a function."""
    wrong = [f"{path.relative_to(SRC)}:{line} imports {target}" for module, path in serving_modules()
             for target, line, _ in imported(module, path) if _forbidden(target)]
    assert serving_modules() and wrong == []


def test_serving_never_loads_training_or_lightning():
    """Transitively: a fresh interpreter importing every `pepx.serving` module (app, server, predictor, the
    gate, ...) has loaded neither lightning nor pepx.training, experiments or release."""
    names = [m for m, _ in serving_modules()]
    code = (f"import importlib, sys\nfor m in {names!r}: importlib.import_module(m)\n"
            f"print(sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') "
            f"for f in {SERVING_FORBIDDEN!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert {"pepx.serving.app", "pepx.serving.predictor", "pepx.serving.server"} <= set(names)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- item 14
def _args_block(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    assert "\nArgs:\n" in doc, f"{cls.__name__} has no Args: block"
    return doc.split("\nArgs:\n", 1)[1]


@pytest.mark.parametrize("cls", [PEPXResNet, COVIDNet, ResNet, FocalLoss, CXRDataset, TrainConfig],
                         ids=lambda c: c.__name__)
def test_public_constructors_document_every_argument(cls):
    block = _args_block(cls)
    params = [n for n in inspect.signature(cls).parameters if n != "self"]
    missing = [n for n in params if not re.search(rf"\b{n}\b", block)]
    assert missing == [], f"{cls.__name__}: Args does not name {missing}"


@pytest.mark.parametrize("name", list_models())
def test_model_factories_hide_no_arguments(name):
    params = inspect.signature(model_factory(name)).parameters.values()
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    assert {"num_classes", "in_chans", "width"} <= {p.name for p in params}


# --------------------------------------------------------------------------- the tests' own layout
TESTS = ROOT / "tests"


def test_no_test_module_imports_another_and_helpers_are_not_named_like_tests():
    """Shared fakes live in `tests/fakes/` (and fixtures in a `conftest.py`), never in a test module that
    others import; a `test_*.py` holds tests, so a helper module is never named like one."""
    wrong = []
    for path in sorted(TESTS.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            wrong += [f"{path.relative_to(ROOT)}:{node.lineno} imports {name}" for name in names
                      if name.split(".")[0].startswith("test_") or name.split(".")[0] == "conftest"]
        tests = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                 and n.name.lower().startswith("test")]
        if path.name.startswith("test_") and not tests:
            wrong.append(f"{path.relative_to(ROOT)} is named like a test module but holds no test")
    assert not wrong, "\n".join(wrong)


def test_test_files_are_grouped_by_package_with_unique_names():
    """Test folders mirror `src/pepx` (plus `hostile/`, the cross-cutting bad-input probe); no folder has an
    `__init__.py`, so pytest imports each test file by its bare name, which must be unique."""
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and p.name not in {"__pycache__", "fakes"}}
    packages = {p.name for p in SRC.iterdir() if (p / "__init__.py").is_file()}
    assert folders - packages <= {"cli", "hostile"}, folders - packages
    names = [p.name for p in TESTS.rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
