"""Typed records from TOML, and back: the machinery under :mod:`monitor.config.schema`.

A record is a frozen dataclass; each field's type says how its TOML value is
read (``Annotated[float, DURATION]`` takes ``"30s"``, a ``Literal`` takes one
of its words, a tuple of records is an array of tables). Errors are one line:
``FILE: KEY: got VALUE; expected WHAT`` and, for an unknown key, the nearest
valid one (difflib).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Annotated, Any, Callable, Literal

from monitor.errors import UserError
from monitor.units import Size, UnitError, format_duration, parse_duration, parse_size

# Markers for Annotated fields: how a raw TOML value becomes a Python one.
DURATION = "duration"  # "30s" -> 30.0 seconds
PERCENT = "percent"  # 5, 5.0 or "5%" -> 5.0 (0..100)
ABSOLUTE = "absolute"  # a Size that may not be a percentage


class ConfigError(UserError):
    """A config problem, already phrased as the one line a user sees (exit 2)."""

    label = "config error: "


def doc(text: str, **extra: Any) -> dict[str, Any]:
    return {"doc": text, **extra}


def key_of(f: dataclasses.Field) -> str:
    return f.metadata.get("key", f.name)


def public_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


class RecordLoader:
    """Builds records from TOML tables; ``check(record, file, prefix)`` adds the checks that
    need more than one field (it raises ConfigError). Every error in the file is found, not only
    the first: :meth:`build` raises one ConfigError whose lines are all of them, in file order."""

    def __init__(self, check: Callable[[Any, str, str], None]):
        self.check = check

    def build(self, cls: type, table: Any, file: str, prefix: str) -> Any:
        errors: list[str] = []
        obj = self._build(cls, table, file, prefix, errors)
        if errors:
            raise ConfigError("\n".join(errors))
        return obj

    def _build(self, cls: type, table: Any, file: str, prefix: str, errors: list[str]) -> Any:
        where = prefix.rstrip(".") or "the top level"
        if not isinstance(table, dict):
            raise ConfigError(f"{file}: {where}: got {show(table)}; expected a table")
        before = len(errors)
        hints = typing.get_type_hints(cls, include_extras=True)
        fields = {key_of(f): f for f in public_fields(cls)}
        values = {}
        for key in table:  # in the file's order, so the errors are too
            if key not in fields:
                close = _close(key, list(fields))
                hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(fields)}"
                errors.append(f"{file}: {prefix}{key}: unknown key{hint}")
                continue
            f = fields[key]
            try:
                values[f.name] = self.convert(hints[f.name], table[key], file, f"{prefix}{key}", f, errors)
            except ConfigError as exc:
                errors.append(str(exc))
        if len(errors) > before:  # this record (or one inside it) is wrong: said; its cross-checks would
            try:                  # only repeat it
                return cls(**values)
            except (TypeError, ValueError):
                return None
        obj = cls(**values)
        try:
            self.check(obj, file, prefix)
        except ConfigError as exc:
            errors.append(str(exc))
        return obj

    def convert(self, tp: Any, value: Any, file: str, key: str, f: dataclasses.Field,
                errors: list[str] | None = None) -> Any:
        """One TOML value as ``tp``; raises ConfigError for it, and adds to ``errors`` what records
        inside it got wrong (an array of tables goes on past a bad one)."""
        errors = [] if errors is None else errors

        def fail(expected: str) -> typing.NoReturn:
            raise ConfigError(f"{file}: {key}: got {show(value)}; expected {expected}")

        origin = typing.get_origin(tp)
        if origin is Annotated:
            base, marker = typing.get_args(tp)[:2]
            try:
                if marker == DURATION:
                    return parse_duration(value)
                if marker == PERCENT:
                    return _parse_percent(value)
                if marker == ABSOLUTE:
                    return parse_size(value, allow_percent=False)
            except UnitError as exc:
                fail(str(exc))
            return self.convert(base, value, file, key, f, errors)
        if origin in (types.UnionType, typing.Union):
            options = [a for a in typing.get_args(tp) if a is not type(None)]
            return self.convert(options[0], value, file, key, f, errors)
        if origin is Literal:
            choices = typing.get_args(tp)
            if value not in choices:
                close = _close(str(value), [str(c) for c in choices])
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                fail("one of " + ", ".join(f'"{c}"' for c in choices) + hint)
            return value
        if origin is tuple:  # arrays of tables: [[rule]], [[schedule]]
            item = typing.get_args(tp)[0]
            if not isinstance(value, list):
                fail(f"an array of tables ([[{key}]])")
            return tuple(self._build_item(item, v, file, f"{key}[{i}].", errors) for i, v in enumerate(value))
        if origin is list:
            item = typing.get_args(tp)[0]
            if not isinstance(value, list):
                fail("a list")
            return [self.convert(item, v, file, f"{key}[{i}]", f, errors) for i, v in enumerate(value)]
        if tp is Size:
            try:
                return parse_size(value)
            except UnitError as exc:
                fail(str(exc))
        if tp is bool:
            if not isinstance(value, bool):
                fail("true or false")
            return value
        if tp is str:
            if not isinstance(value, str):
                fail("a string")
            if "\x00" in value:
                fail("a string without NUL characters")
            return value
        if dataclasses.is_dataclass(tp):
            return self._build(tp, value, file, f"{key}.", errors)
        raise TypeError(f"config field type {tp!r} has no converter")  # a programming error, not user input

    def _build_item(self, cls: type, value: Any, file: str, prefix: str, errors: list[str]) -> Any:
        try:
            return self._build(cls, value, file, prefix, errors)
        except ConfigError as exc:  # this item is no table: said, and the next items are looked at too
            errors.append(str(exc))
            return None


def _parse_percent(value: Any) -> float:
    if isinstance(value, bool):
        raise UnitError("a percentage from 0 to 100")
    if isinstance(value, str) and value.strip().endswith("%"):
        value = value.strip()[:-1]
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UnitError("a percentage from 0 to 100, such as 5 or \"5%\"") from None
    if not 0 <= number <= 100:
        raise UnitError("a percentage from 0 to 100")
    return number


def show(value: Any) -> str:
    """A value as it appears in an error line: short, printable, one line."""
    if isinstance(value, dict):
        return "a table"
    text = repr(value) if not isinstance(value, str) else '"' + value + '"'
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= 60 else text[:57] + "..."


def table_lines(record: Any) -> list[str]:
    hints = typing.get_type_hints(type(record), include_extras=True)
    out = []
    for f in public_fields(type(record)):
        value = getattr(record, f.name)
        if value is None:
            continue
        out.append(f"{key_of(f)} = {_toml_value(value, hints[f.name])}")
    return out


def _toml_value(value: Any, tp: Any) -> str:
    if typing.get_origin(tp) is Annotated and typing.get_args(tp)[1] == DURATION:
        return _toml_str(format_duration(value) if value >= 1 or value == 0 else f"{value * 1000:g}ms")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Size):
        return _toml_str(str(value)) if value.text and not value.text.isdigit() else str(value.bytes)
    if isinstance(value, (int, float)):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v, type(v)) for v in value) + "]"
    return _toml_str(str(value))


def _toml_str(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'


def _close(word: str, choices: list[str]) -> list[str]:
    """"did you mean" (difflib only when a config has a mistake: the watcher's RSS)."""
    import difflib

    return difflib.get_close_matches(word, choices, n=1)
