"""Typed configuration: YAML -> frozen dataclasses that reject unknown keys.

This is the lowest layer every other package may import, so the loader lives here.
Errors name the dotted field path and the file it came from.

A field typed as a union of dataclasses that each declare `name: Literal["..."]` is a tagged
union: the mapping's `name` picks the class (`agent: {name: td3, gamma: 0.98}`), an unknown
name is an error listing the known ones, and a mapping without `name` takes the class of the
field's default (an error if the field has no such default).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid. The message names field and file."""


def load_yaml(path: str | Path) -> dict:
    """The mapping a YAML file holds ({} for an empty file). A missing file, a folder, a file
    that cannot be read, text that is not UTF-8 (the byte and its offset are named), invalid
    YAML and a top level that is not a mapping are each a ConfigError naming the file."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, expected a YAML file")
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror or err})") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at "
                          f"offset {err.start}); save it as UTF-8") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML{_yaml_problem(err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _yaml_problem(err: yaml.YAMLError) -> str:
    """` at line L, column C: what PyYAML found` (one line), or `: its message`."""
    mark, problem = getattr(err, "problem_mark", None), getattr(err, "problem", None)
    if mark is None or not problem:
        return f": {' '.join(str(err).split())}"
    return f" at line {mark.line + 1}, column {mark.column + 1}: {problem}"


def from_dict(cls: type[T], data: Any, *, source: str = "<config>", prefix: str = "") -> T:
    """Build dataclass `cls` from a mapping; unknown keys and wrong types raise ConfigError."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: '{prefix or cls.__name__}' must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"{source}: unknown key '{where}{unknown[0]}' in {cls.__name__} "
            f"(known: {', '.join(sorted(fields))})"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        path = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(hints[name], value, source, path, default=_default(fields[name]))
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except TypeError as err:  # missing required field
        raise ConfigError(f"{source}: {prefix or cls.__name__}: {err}") from err
    except ValueError as err:  # __post_init__ checks
        raise ConfigError(f"{source}: {prefix + ': ' if prefix else ''}{err}") from err


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _coerce(tp: Any, value: Any, source: str, path: str, default: Any = dataclasses.MISSING) -> Any:
    """`value` as type `tp`; `default` is the field's default (it picks the member of a tagged
    union when the mapping does not name one)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        tagged = _tagged_members(inner)
        if tagged:
            return _coerce_tagged(tagged, value, source, path, default)
        return _coerce(inner[0], value, source, path)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, source=source, prefix=path)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: '{path}' must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, source, f"{path}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{source}: '{path}' must have {len(args)} items, got {len(value)}")
        return tuple(_coerce(a, v, source, f"{path}[{i}]")
                     for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: '{path}' must be a mapping")
        vt = args[1] if args else Any
        return {str(k): _coerce(vt, v, source, f"{path}.{k}") for k, v in value.items()}
    if typing.get_origin(tp) is typing.Literal:
        if value not in args:
            raise ConfigError(f"{source}: '{path}' must be one of {list(args)}, got {value!r}")
        return value
    if tp is float:
        return _coerce_float(value, source, path)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: '{path}' must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: '{path}' must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: '{path}' must be a string, got {value!r}")
        return value
    return value


# --- tagged unions: `A | B` of dataclasses that each declare `name: Literal["a"]` ---

def _tagged_members(members: list) -> dict[str, type]:
    """{name: dataclass} when every member of a union (two or more) is a dataclass whose `name`
    field is a Literal; {} otherwise (then the union is not a tagged one)."""
    table: dict[str, type] = {}
    if len(members) < 2:
        return {}
    for member in members:
        if not dataclasses.is_dataclass(member):
            return {}
        hint = typing.get_type_hints(member).get("name")
        if typing.get_origin(hint) is not typing.Literal:
            return {}
        table.update({value: member for value in typing.get_args(hint)})
    return table


def _coerce_tagged(table: dict[str, type], value: Any, source: str, path: str,
                   default: Any) -> Any:
    """Build the member that `value["name"]` names; without a name, the member the field's
    default is an instance of (no default of a member: the name is required)."""
    if isinstance(value, tuple(table.values())):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: '{path}' must be a mapping")
    kind = path.rsplit(".", 1)[-1].split("[", 1)[0]
    known = ", ".join(sorted(table))
    if "name" in value:
        name = value["name"]
        if not isinstance(name, str) or name not in table:
            raise ConfigError(f"{source}: '{path}.name': unknown {kind} {name!r} "
                              f"(known: {known})")
        cls = table[name]
    elif isinstance(default, tuple(table.values())):
        cls = type(default)
    else:
        raise ConfigError(f"{source}: '{path}.name' is required (known: {known})")
    return from_dict(cls, value, source=source, prefix=path)


def _coerce_float(value: Any, source: str, path: str) -> float:
    """Every float field, in a dataclass, a list or a mapping, comes through here: a number
    (an int, or a numeric string: PyYAML reads `1e-3`, with no dot, as a string), and finite:
    NaN and infinity (YAML's `.nan`, `.inf`, or `nan` given to --set) are never a setting."""
    if isinstance(value, str):
        value = _number_or_same(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{source}: '{path}' must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{source}: '{path}' must be a finite number, got {value!r}")
    return float(value)


def _number_or_same(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain YAML-safe structure (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def deep_merge(base: dict, overlay: Mapping) -> dict:
    """Overlay wins; mappings merge recursively; lists are replaced whole."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `a.b.c=value` strings; the value is parsed as YAML (so `1e-3`, `[1, 2]`, `true`)."""
    out = dict(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set: expected key=value, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or "unreadable"
            raise ConfigError(f"--set {item}: the value is not valid YAML ({problem}); quote "
                              "text, write lists as [1, 2]") from None
        if isinstance(value, str):  # `1e-3` has no dot, so YAML left it a string
            value = _number_or_same(value)
        node = {}
        cursor = node
        parts = key.split(".")
        for part in parts[:-1]:
            cursor[part] = {}
            cursor = cursor[part]
        cursor[parts[-1]] = value
        out = deep_merge(out, node)
    return out
