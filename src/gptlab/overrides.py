"""Typed settings for any dataclass config: declared choices and bounds, `key=value` overrides
and TOML files.

A field declares what it accepts: its type (int, float, bool, str, a `Literal[...]` of choices, or
Optional of one of them, where `none` means unset, in TOML too) and, through `setting(...)`, its
numeric bounds. One set of checks reads those declarations, whichever way a value arrives: a
TOML table, a `key=value` override (parsed by the declared type; nothing is ever eval'd) or
Python construction (`check_fields`, from a config's __post_init__). An unknown key fails with
the nearest valid one, a wrong type with the expected type, a value out of range with the range.

A config is flat (fine-tuning options: `epochs=3`) or sectioned, its fields being flat configs
(a run config: `train.lr=1e-3`); `override` and `apply_table` take either. Run configs
(gptlab.train.config), model configs (gptlab.model.config) and fine-tuning options
(gptlab.finetune.options) are all read this way. Rules that tie several fields together stay in
each config's `validate()`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Literal

from gptlab.errors import GptlabError
from gptlab.fileio import read_text


def setting(
    default=dataclasses.MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    says: str | None = None,
) -> dataclasses.Field:
    """A dataclass field with numeric bounds: `lr: float = setting(1e-3, gt=0)`.

    ge/gt/le/lt: value >= / > / <= / < the bound (None, for an Optional field, is not checked).
    says: how the error describes the valid values, where the bounds alone would say it badly
    (e.g. "a positive integer", "in [0, 2**62)").
    """
    bounds = {"ge": ge, "gt": gt, "le": le, "lt": lt}
    metadata = {k: v for k, v in bounds.items() if v is not None}
    if says is not None:
        metadata["says"] = says
    return dataclasses.field(default=default, metadata=metadata)


def split_assignment(assignment: str, form: str, example: str) -> tuple[str, str]:
    """`key=value` -> (key, value text); `form` and `example` show the expected form in the error."""
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise GptlabError(f"override {assignment!r} is not of the form {form} (e.g. {example})")
    return key.strip(), text


def field_names(obj_or_class) -> list[str]:
    return [f.name for f in dataclasses.fields(obj_or_class)]


@functools.cache
def _type_hints(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls)


def field_type(obj_or_class, name: str) -> object:
    cls = obj_or_class if isinstance(obj_or_class, type) else type(obj_or_class)
    return _type_hints(cls)[name]


def field_metadata(obj_or_class, name: str) -> typing.Mapping:
    return next(f.metadata for f in dataclasses.fields(obj_or_class) if f.name == name)


def nearest_key(key: str, valid: list[str]) -> str:
    """The valid key a slip most likely meant: the same name under another section, else the
    closest spelling of the whole key."""
    name = key.rpartition(".")[2]
    same_name = [k for k in valid if k.rpartition(".")[2] == name]
    return same_name[0] if same_name else difflib.get_close_matches(key, valid, n=1, cutoff=0.0)[0]


# -- checking a value against its declaration -------------------------------------------------------


def check_setting(key: str, value: object, tp: object, metadata: typing.Mapping) -> object:
    """The value as the field stores it (see check_value), after its type, choices and bounds
    are checked; `key` names the setting in errors."""
    value = check_value(key, value, tp)
    check_choice(key, value, tp)
    check_bounds(key, value, metadata)
    return value


def check_choice(key: str, value: object, tp: object) -> None:
    valid = choices(tp)
    if valid is None or value is None or value in valid:
        return
    close = difflib.get_close_matches(str(value), valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise GptlabError(f"{key} must be one of {', '.join(valid)}, got {value!r}{hint}")


def check_bounds(key: str, value: object, metadata: typing.Mapping) -> None:
    if value is None or not any(k in metadata for k in ("ge", "gt", "le", "lt")):
        return
    if isinstance(value, float) and math.isinf(value):
        # inf passes a one-sided bound (lr > 0) and then poisons the work (a NaN loss, a budget
        # that never ends); None is how a setting says "no limit"
        raise GptlabError(f"{key} must be a finite number, got {value!r}")
    ok = (
        ("ge" not in metadata or value >= metadata["ge"])
        and ("gt" not in metadata or value > metadata["gt"])
        and ("le" not in metadata or value <= metadata["le"])
        and ("lt" not in metadata or value < metadata["lt"])
    )
    if not ok:
        raise GptlabError(f"{key} must be {describe_bounds(metadata)}, got {value!r}")


COMPARISONS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def describe_bounds(metadata: typing.Mapping) -> str:
    """What the bounds allow: ">= 1", "> 0", "in [0, 1)" ... (or the field's own `says`)."""
    if "says" in metadata:
        return metadata["says"]
    low = next(((k, metadata[k]) for k in ("ge", "gt") if k in metadata), None)
    high = next(((k, metadata[k]) for k in ("le", "lt") if k in metadata), None)
    if low and high:
        left, right = "[" if low[0] == "ge" else "(", "]" if high[0] == "le" else ")"
        return f"in {left}{low[1]}, {high[1]}{right}"
    kind, bound = low or high
    return f"{COMPARISONS[kind]} {bound}"


def check_fields(obj, prefix: str = "") -> None:
    """Check every field of a constructed dataclass against its declaration (type, choices,
    bounds); fields that are themselves dataclasses check themselves when built. Values are
    left as given (no conversion): this is a check, not a parse."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            continue
        key = f"{prefix}{f.name}"
        try:
            check_value(key, value, field_type(obj, f.name))
        except GptlabError:
            if "says" not in f.metadata:
                raise
            raise GptlabError(f"{key} must be {f.metadata['says']}, got {value!r}") from None
        check_choice(key, value, field_type(obj, f.name))
        check_bounds(key, value, f.metadata)


def set_field(obj, name: str, value: object, key: str) -> None:
    """obj.name = value after checking it against the field's declaration (`key` names it)."""
    checked = check_setting(key, value, field_type(obj, name), field_metadata(obj, name))
    setattr(obj, name, checked)


# -- keys, overrides and tables: flat or sectioned configs ------------------------------------------


def section_names(obj) -> list[str]:
    """The fields of `obj` that are themselves configs (empty for a flat config)."""
    return [
        f.name for f in dataclasses.fields(obj) if dataclasses.is_dataclass(getattr(obj, f.name))
    ]


def all_keys(obj) -> list[str]:
    """Every valid key: `name` for a flat config, `section.name` for a sectioned one."""
    sections = section_names(obj)
    if not sections:
        return field_names(obj)
    return [f"{s}.{name}" for s in sections for name in field_names(getattr(obj, s))]


def resolve_key(obj, key: str, prefix: str = "") -> tuple[object, str]:
    """(the config that holds `key`, its field name); an unknown key names the nearest one
    (on a flat config, written with `prefix`, e.g. "model.")."""
    sections = section_names(obj)
    if sections:
        section, _, name = key.partition(".")
        if section in sections and name in field_names(getattr(obj, section)):
            return getattr(obj, section), name
        nearest = nearest_key(key, all_keys(obj))
        raise GptlabError(
            f"unknown config key {key!r}; did you mean {nearest!r}? (keys are section.name)"
        )
    if key in field_names(obj):
        return obj, key
    nearest = nearest_key(key, all_keys(obj))
    raise GptlabError(f"unknown setting {prefix + key!r}; did you mean {prefix + nearest!r}?")


def override(obj, assignments: list[str]) -> None:
    """Apply `key=value` strings in order, each value parsed by its field's declared type."""
    if section_names(obj):
        form, example = "section.key=value", "train.lr=1e-3"
    else:
        form, example = "key=value", f"{field_names(obj)[0]}=..."
    for assignment in assignments:
        key, text = split_assignment(assignment, form, example)
        target, name = resolve_key(obj, key)
        set_field(target, name, parse_value(key, text, field_type(target, name)), key)


def apply_table(obj, table: dict, source: str, *, prefix: str = "") -> None:
    """Set every key of a parsed TOML table on `obj`: `[section]` tables on a sectioned config,
    top-level keys on a flat one (`prefix` names them in errors, e.g. "model." for a preset's
    [model] table applied to a ModelConfig). Errors start with `source`."""
    sections = section_names(obj)
    for name, value in table.items():
        if sections and (name not in sections or not isinstance(value, dict)):
            nearest = difflib.get_close_matches(name, sections, n=1, cutoff=0.0)[0]
            raise GptlabError(f"{source}: unknown section {name!r}; did you mean [{nearest}]?")
        items = (
            [(f"{name}.{inner}", inner_value) for inner, inner_value in value.items()]
            if sections
            else [(name, value)]
        )
        for key, item in items:
            try:
                target, field = resolve_key(obj, key, prefix)
                set_field(target, field, item, prefix + key)
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


def choices(tp: object) -> tuple[str, ...] | None:
    """The values of a `Literal[...]` field (Optional or not), else None."""
    inner, _ = unwrap_optional(tp)
    return typing.get_args(inner) if typing.get_origin(inner) is Literal else None


def base_type(tp: object) -> tuple[type, bool]:
    """(the Python type a value must have, is_optional); a Literal of strings is a str."""
    inner, optional = unwrap_optional(tp)
    return (str if typing.get_origin(inner) is Literal else inner), optional


def parse_value(key: str, text: str, tp: object) -> object:
    """Parse the text of a command-line override by the field's declared type.

    Strings are kept verbatim (a prompt may start with a space); other values may carry spaces.
    """
    inner, optional = base_type(tp)
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
    inner, optional = base_type(tp)
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
    inner, optional = base_type(tp)
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
