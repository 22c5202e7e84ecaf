"""Typed settings from text: `key=value` overrides and TOML files, for any dataclass config.

A value is parsed by the declared type of its field (int, float, bool, str, or Optional of one of
them, where `none` means unset, in TOML too); nothing is ever eval'd. An unknown key fails with
the nearest valid one, a wrong type with the expected type. Run configs (gptlab.train.config) and
fine-tuning options (gptlab.finetune.options) are both read this way.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import tomllib
import types
import typing
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.fileio import read_text


def split_assignment(assignment: str, form: str, example: str) -> tuple[str, str]:
    """`key=value` -> (key, value text); `form` and `example` show the expected form in the error."""
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise GptlabError(f"override {assignment!r} is not of the form {form} (e.g. {example})")
    return key.strip(), text


def field_names(obj_or_class) -> list[str]:
    return [f.name for f in dataclasses.fields(obj_or_class)]


def field_type(obj_or_class, name: str) -> object:
    cls = obj_or_class if isinstance(obj_or_class, type) else type(obj_or_class)
    return typing.get_type_hints(cls)[name]


def nearest_key(key: str, valid: list[str]) -> str:
    """The valid key a slip most likely meant: the same name under another section, else the
    closest spelling of the whole key."""
    name = key.rpartition(".")[2]
    same_name = [k for k in valid if k.rpartition(".")[2] == name]
    return same_name[0] if same_name else difflib.get_close_matches(key, valid, n=1, cutoff=0.0)[0]


def set_field(obj, name: str, value: object, key: str) -> None:
    """obj.name = value after checking it against the field's type (`key` names it in errors)."""
    setattr(obj, name, check_value(key, value, field_type(obj, name)))


def override_fields(obj, assignments: list[str], *, prefix: str = "") -> None:
    """Apply `name=value` strings to a flat dataclass; keys are reported as prefix + name."""
    names = field_names(obj)
    for assignment in assignments:
        key, text = split_assignment(assignment, "key=value", f"{prefix}{names[0]}=...")
        name = key.removeprefix(prefix)
        if name not in names:
            nearest = nearest_key(name, names)
            raise GptlabError(f"unknown setting {key!r}; did you mean {prefix}{nearest!r}?")
        setattr(obj, name, parse_value(f"{prefix}{name}", text, field_type(obj, name)))


def apply_fields(obj, table: dict, source: str, *, prefix: str = "") -> None:
    """Set every key of a parsed TOML table on a flat dataclass."""
    names = field_names(obj)
    for name, value in table.items():
        if name not in names:
            nearest = nearest_key(name, names)
            raise GptlabError(
                f"{source}: unknown setting {prefix}{name!r}; did you mean {prefix}{nearest!r}?"
            )
        try:
            set_field(obj, name, value, f"{prefix}{name}")
        except GptlabError as exc:
            raise GptlabError(f"{source}: {exc}") from None


# -- typed values --------------------------------------------------------------------------------


def unwrap_optional(tp: object) -> tuple[type, bool]:
    """(inner type, is_optional) for `X | None`, else (X, False)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def parse_value(key: str, text: str, tp: object) -> object:
    """Parse the text of a command-line override by the field's declared type.

    Strings are kept verbatim (a prompt may start with a space); other values may carry spaces.
    """
    inner, optional = unwrap_optional(tp)
    if inner is not str:
        text = text.strip()
    if optional and text.lower() in ("none", "null"):
        return None
    try:
        if inner is bool:
            lowered = text.lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if inner is int:
            as_float = float(text)  # accepts 1e6 and 1_000, but only when it is a whole number
            if not as_float.is_integer():
                raise ValueError
            return int(as_float) if "e" in text.lower() or "." in text else int(text)
        if inner is float:
            return float(text)
        if inner is str:
            return text
    except ValueError:
        raise GptlabError(f"{key} must be {type_name(tp)}, got {text!r}") from None
    raise TypeError(f"config field {key} has unsupported type {tp!r}")  # a bug in the dataclass


def check_value(key: str, value: object, tp: object) -> object:
    """Check a value (from TOML or parse_value) against the declared type; ints widen to floats."""
    inner, optional = unwrap_optional(tp)
    if optional and (
        value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
    ):
        return None  # TOML has no null: an unset optional is written as "none"
    if inner is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if inner is str and isinstance(value, int) and not isinstance(value, bool):
        # TOML reads `threads = 4` as a number, and configs written before threads took "auto"
        # hold one: a text field takes it as its digits (the field's own check comes after).
        return str(value)
    if inner in (int, float) and isinstance(value, bool):
        value_ok = False
    else:
        value_ok = isinstance(value, inner)
    if not value_ok:
        hint = f' (in TOML, quote it: "{value}")' if inner is str else ""
        raise GptlabError(f"{key} must be {type_name(tp)}, got {value!r}{hint}")
    return value


def type_name(tp: object) -> str:
    inner, optional = unwrap_optional(tp)
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(inner, str(inner)) + (" or none" if optional else "")


# -- TOML ------------------------------------------------------------------------------------------


def read_toml(path: str | Path) -> dict:
    try:
        return tomllib.loads(read_text(path, "config file", allow_empty=True))
    except tomllib.TOMLDecodeError as exc:
        raise GptlabError(f"config file {path} is not valid TOML ({exc})") from None


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # shortest round-tripping form: 0.001, 1e-05, 3.0
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    raise TypeError(f"cannot write {type(value).__name__} as a TOML value")


def dump_toml(tables: dict[str, dict], header: str = "") -> str:
    """Tables of scalars as TOML; None (unset) is written as the string "none"."""
    lines = [f"# {header}", ""] if header else []
    for name, values in tables.items():
        lines += [f"[{name}]", *toml_lines(values), ""]
    return "\n".join(lines)


def dump_flat_toml(values: dict, header: str = "") -> str:
    """Top-level `key = value` lines (a flat dataclass, e.g. fine-tuning options)."""
    return "\n".join([*([f"# {header}", ""] if header else []), *toml_lines(values), ""])


def toml_lines(values: dict) -> list[str]:
    return [
        f"{key} = {toml_value('none' if value is None else value)}" for key, value in values.items()
    ]
