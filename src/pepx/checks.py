"""`check_kwargs`: keyword arguments checked against a callable's signature and type hints, before it runs.

Model and loss factories take user-written keyword arguments (``model_kwargs.width=0.5`` on the command line).
A misspelt name or a wrong type would otherwise fail deep inside a constructor, or halfway through training,
with a traceback; this names the argument, the value and what was expected. Hand-written because the checks
needed (unknown names with the valid ones listed; int / float / bool / str / Literal / tuple / Optional hints)
are a few lines, and the validation libraries (pydantic, typeguard) would be a dependency for them alone.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pepx.errors import ConfigError

#: Largest input side anything in pepx takes (`pepx train` image_size, a bundle's input, `pepx models
#: --size`): a typo such as 100000 would otherwise allocate tens of GB before failing.
MAX_IMAGE_SIZE = 2048
#: Largest channel multiplier of a model (width 4: ~16x the parameters; ResNet18 then has 180 M).
MAX_WIDTH = 4.0


def accepted_kwargs(fn: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """The keyword-passable parameters of ``fn`` (a function or a class), by name."""
    params = inspect.signature(fn).parameters
    return {n: p for n, p in params.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n != "self"}


def check_kwargs(fn: Callable[..., Any], kwargs: Mapping[str, Any], where: str,
                 reserved: tuple[str, ...] = (), owner: str | None = None) -> None:
    """Raise `ConfigError` when a key of ``kwargs`` is not a parameter of ``fn`` or its value does not fit the
    parameter's type hint. ``where`` prefixes each message (``model_kwargs`` -> ``model_kwargs.width=...``);
    ``reserved`` names parameters set elsewhere (e.g. ``num_classes``), which ``kwargs`` may not repeat;
    ``owner`` names ``fn`` in the message (default: its ``__name__``)."""
    params = accepted_kwargs(fn)
    try:
        hints = typing.get_type_hints(fn.__init__ if inspect.isclass(fn) else fn)
    except (NameError, TypeError):  # an unresolvable hint: check names only
        hints = {}
    names = [n for n in params if n not in reserved]
    for key, value in kwargs.items():
        if key in reserved:
            raise ConfigError(f"{where}.{key}: set by pepx itself, not through {where}")
        if key not in params:
            takes = ", ".join(names) or "none"
            raise ConfigError(f"{where}.{key}: unknown argument; {owner or _name(fn)} takes {takes}")
        hint = hints.get(key)
        if hint is not None and not _fits(value, hint):
            raise ConfigError(f"{where}.{key}={value!r}: expected {_describe(hint)}")


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits ``hint`` (types pepx's constructors use; anything else is accepted)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any or isinstance(hint, typing.TypeVar):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return not args or (len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args,
                                                                                         strict=True)))
    return True


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if hint is type(None):
        return "null"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


__all__ = ["accepted_kwargs", "check_kwargs"]
