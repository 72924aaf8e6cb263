"""Typed dataclass fields: `param(...)` (a default, a one-line help, numeric bounds) and
`section(...)`, and building a dataclass from plain data strictly, so a bad value is
reported as ``algo.lr: expected a number > 0, got -1`` and never as a traceback."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import field
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from raydl.errors import ConfigError, quote

T = TypeVar("T")

# Numbers written as strings are accepted for numeric fields because PyYAML reads `1e-3`
# (no dot) as a string, a classic trap; anything else that is a string stays an error.
_NUMBER_RE = re.compile(r"^[+-]?(\d[\d_]*\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def param(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with a help text and optional numeric bounds."""
    meta = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def section(cls: type[T], help: str = "") -> Any:
    """A nested section field whose default is the section's own defaults."""
    return field(default_factory=cls, metadata={"help": help})


def _bounds_text(meta: typing.Mapping[str, Any]) -> str:
    parts = []
    for key, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if meta.get(key) is not None:
            parts.append(f"{sym} {meta[key]:g}")
    return " and ".join(parts)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        names = [_type_name(a) for a in get_args(tp) if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in get_args(tp) else "")
    if origin is list:
        return f"a list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of names to {_type_name(get_args(tp)[1])}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Return `value` converted to type `tp`, or raise ConfigError naming `where`."""
    if tp is Any:  # checked later by whatever reads it (e.g. a search-space value)
        return value
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return _coerce_union(value, tp, where)
    if origin is Literal:
        return _coerce_literal(value, get_args(tp), where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {quote(value)}")
        (item_tp,) = get_args(tp)
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {quote(value)}")
        key_tp, val_tp = get_args(tp)
        return {
            _coerce(k, key_tp, f"{where} key"): _coerce(v, val_tp, f"{where}.{k}")
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    return _coerce_scalar(value, tp, where)


def _coerce_union(value: Any, tp: Any, where: str) -> Any:
    """The first member of the union (`X | None`, `bool | Literal[...]`) that takes it."""
    args = get_args(tp)
    if value is None and type(None) in args:
        return None
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _coerce(value, arg, where)
        except ConfigError:
            continue
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {quote(value)}")


def _coerce_literal(value: Any, allowed: tuple[Any, ...], where: str) -> Any:
    if value in allowed and type(value) is type(allowed[0]):
        return value
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(
        f"{where}: {quote(value)} is not allowed{hint}; allowed: {', '.join(map(repr, allowed))}"
    )


def _coerce_scalar(value: Any, tp: Any, where: str) -> Any:
    """bool, int, float (numbers written as strings too: YAML's `1e-3` trap) or str."""
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {quote(value)}")
    if tp in (int, float) and isinstance(value, str) and _NUMBER_RE.match(value.strip()):
        value = float(value.replace("_", ""))
    if tp is int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {quote(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{where}: expected a finite number, got {quote(value)}")
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {quote(value)}")
    if tp is str:
        if isinstance(value, str) and value:
            return value
        raise ConfigError(f"{where}: expected a non-empty string, got {quote(value)}")
    raise ConfigError(f"{where}: unsupported field type {tp!r}")  # a bug in a section


def _check_bounds(value: Any, meta: typing.Mapping[str, Any], where: str) -> None:
    if isinstance(value, list):  # a list field's bounds hold for each item (layer widths)
        for i, item in enumerate(value):
            _check_bounds(item, meta, f"{where}[{i}]")
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    ok = (
        (meta.get("gt") is None or value > meta["gt"])
        and (meta.get("ge") is None or value >= meta["ge"])
        and (meta.get("lt") is None or value < meta["lt"])
        and (meta.get("le") is None or value <= meta["le"])
    )
    if not ok:
        raise ConfigError(f"{where}: expected a number {_bounds_text(meta)}, got {quote(value)}")


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass `cls` from a mapping, strictly: unknown keys and bad values raise."""
    label = where or "experiment"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{label}: expected a mapping of keys to values, got {quote(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        name = key if isinstance(key, str) and len(key) <= 80 else quote(key)
        path = f"{where}.{name}" if where else name
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{path}: unknown key{hint}; allowed: {', '.join(sorted(fields))}"
            )
        coerced = _coerce(value, hints[key], path)
        _check_bounds(coerced, fields[key].metadata, path)
        kwargs[key] = coerced
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as exc:  # a nested section's check names where it sits
            if where and not str(exc).startswith(where.split(".")[0]):
                raise ConfigError(f"{where}: {exc}") from None
            raise
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """A plain, YAML-ready dict of a config dataclass."""
    return dataclasses.asdict(obj)
