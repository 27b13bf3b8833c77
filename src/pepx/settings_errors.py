"""A pydantic settings model's `ValidationError` as one `ConfigError` line naming the setting.

Two namings, one per kind of settings: ``"key"`` for config-file keys (`TrainConfig`: ``epochs must be >= 1,
got 0``; ``optimizer='rmsprop': choose one of adam, adamw, sgd``; ``unknown config key 'epoch' (did you mean
'epochs'?); known keys: ...``) and ``"flag"`` for command-line options (`ServeSettings`, `ExportSettings`:
``--max-batch 0: must be a number in [1, 1024]``; ``ServeSettings: unknown setting 'workers' (did you mean
'decode_workers'?)``). A setting's option is ``--`` + its name with dashes unless the model's ``FLAGS``
class attribute names another.
"""

from __future__ import annotations

import difflib
import typing
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ValidationError

from pepx.errors import ConfigError

Naming = Literal["key", "flag"]

#: pydantic's error types -> what the value should have been (config-key naming).
_EXPECTED = {"int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
             "float_type": "a number", "float_parsing": "a number", "bool_type": "true/false",
             "string_type": "a single value", "dict_type": "a mapping", "list_type": "a list"}
#: pydantic's bound errors -> (the sign, the bound's name in the error's context).
_BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
           "less_than": ("<", "lt")}


class Settings(BaseModel):
    """A pydantic settings model whose bad values raise `settings_error`'s one line (``NAMING`` says how
    the settings are named) instead of pydantic's `ValidationError`."""

    NAMING: ClassVar[Naming] = "flag"

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as err:
            raise settings_error(type(self), err, self.NAMING) from None


def unknown_setting(model: type[BaseModel], name: str, naming: Naming) -> ConfigError:
    """The error for a `name` that `model` does not declare, with the closest name it does."""
    names = list(model.model_fields)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    if naming == "key":
        return ConfigError(f"unknown config key {name!r}{hint}; known keys: {', '.join(names)}")
    return ConfigError(f"{model.__name__}: unknown setting {name!r}{hint}")


def check_setting_name(model: type[BaseModel], name: str, naming: Naming = "key") -> None:
    """Raise `unknown_setting` unless `model` declares `name`."""
    if name not in model.model_fields:
        raise unknown_setting(model, name, naming)


def settings_error(model: type[BaseModel], err: ValidationError, naming: Naming) -> ConfigError:
    """The first problem of `err` (raised by `model`) as one line naming the setting, its value and what it
    may be; a validator's own sentence is kept."""
    first = err.errors(include_url=False)[0]
    kind, loc, value = first["type"], first["loc"], first.get("input")
    name = str(loc[0]) if loc else ""
    key = ".".join(str(part) for part in loc)
    if kind == "extra_forbidden":
        return unknown_setting(model, key if naming == "key" else name, naming)
    field = model.model_fields.get(name)
    if naming == "flag":
        return ConfigError(_flag_line(model, first, name, value, field))
    return ConfigError(_key_line(first, key, name, value, field))


def _key_line(first: Any, key: str, name: str, value: Any, field: Any) -> str:
    """A config key's problem: ``epochs must be >= 1, got 0``, ``lr='x': expected a number``."""
    kind = first["type"]
    if kind == "value_error":  # the field validators' messages name the key; `_no_bool`'s do not
        message = str(first["ctx"]["error"])
        return message if message.startswith(name) else f"{key}={value!r}: {message}"
    nullable = field is not None and type(None) in typing.get_args(field.annotation)
    if kind in _BOUNDS:
        sign, bound_name = _BOUNDS[kind]
        bound = first["ctx"][bound_name]
        bound = int(bound) if isinstance(bound, float) and bound.is_integer() else bound
        return f"{key} must be {sign} {bound}{' (or null)' if nullable else ''}, got {value}"
    if kind == "literal_error" and field is not None:
        return f"{key}={value!r}: choose one of {', '.join(map(str, typing.get_args(field.annotation)))}"
    if value is None:
        return f"{key}: may not be empty"
    return f"{key}={value!r}: expected {_EXPECTED.get(kind, first['msg'])}"


def _flag_line(model: type[BaseModel], first: Any, name: str, value: Any, field: Any) -> str:
    """A command-line option's problem: ``--max-batch 0: must be a number in [1, 1024]``."""
    flag = getattr(model, "FLAGS", {}).get(name) or "--" + name.replace("_", "-")
    if first["type"] == "value_error":  # a validator's own sentence
        return f"{flag}: {first['msg'].removeprefix('Value error, ')}"
    low = next((m.ge for m in field.metadata if hasattr(m, "ge")), None)
    high = next((m.le for m in field.metadata if hasattr(m, "le")), None)
    if low is not None and high is not None:
        return f"{flag} {value}: must be a number in [{low:g}, {high:g}]"
    where = "".join(f"[{k!r}]" for k in first["loc"][1:])
    return f"{flag}{where} {value!r}: {first['msg']}"


__all__ = ["Naming", "Settings", "check_setting_name", "settings_error", "unknown_setting"]
