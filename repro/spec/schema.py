"""A small declarative validator: dataclass fields carry a check in their metadata; `build` turns a mapping
into a frozen dataclass or raises ConfigError naming the key, the bad value and what is allowed."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any


class ConfigError(ValueError):
    """One clear line: key, bad value, what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key} = {value!r} is not allowed; {allowed}")


class Check:
    def __call__(self, key: str, value: Any) -> Any:
        raise NotImplementedError


class Int(Check):
    def __init__(self, lo: int | None = None, hi: int | None = None):
        self.lo, self.hi = lo, hi

    def describe(self) -> str:
        lo = "-inf" if self.lo is None else self.lo
        hi = "inf" if self.hi is None else self.hi
        return f"expected an integer in [{lo}, {hi}]"

    def __call__(self, key, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, value, self.describe())
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            raise ConfigError(key, value, self.describe())
        return value


class Float(Check):
    def __init__(self, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False):
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open

    def describe(self) -> str:
        return f"expected a number in {'(' if self.lo_open else '['}{self.lo}, {self.hi}{')' if self.hi_open else ']'}"

    def __call__(self, key, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, value, self.describe())
        v = float(value)
        too_low = v <= self.lo if self.lo_open else v < self.lo
        too_high = v >= self.hi if self.hi_open else v > self.hi
        if too_low or too_high or v != v:
            raise ConfigError(key, value, self.describe())
        return v


class Bool(Check):
    def __call__(self, key, value):
        if not isinstance(value, bool):
            raise ConfigError(key, value, "expected true or false")
        return value


class Str(Check):
    def __call__(self, key, value):
        if not isinstance(value, str) or not value:
            raise ConfigError(key, value, "expected a non-empty string")
        return value


class Choice(Check):
    """A name from a registry; `allowed` may be a callable so registries are read lazily."""

    def __init__(self, allowed: Iterable[str] | Callable[[], Iterable[str]]):
        self._allowed = allowed

    @property
    def allowed(self) -> list[str]:
        return sorted(self._allowed() if callable(self._allowed) else self._allowed)

    def __call__(self, key, value):
        allowed = self.allowed
        if not isinstance(value, str) or value not in allowed:
            raise ConfigError(key, value, f"allowed: {allowed}")
        return value


class Optional(Check):
    def __init__(self, inner: Check):
        self.inner = inner

    def __call__(self, key, value):
        return None if value is None else self.inner(key, value)


class ListOf(Check):
    def __init__(self, inner: Check, min_len: int = 0, unique: bool = False, increasing: bool = False):
        self.inner, self.min_len, self.unique, self.increasing = inner, min_len, unique, increasing

    def __call__(self, key, value):
        if not isinstance(value, list):
            raise ConfigError(key, value, "expected a list")
        if len(value) < self.min_len:
            raise ConfigError(key, value, f"expected a list of at least {self.min_len} item(s)")
        items = tuple(self.inner(f"{key}[{i}]", v) for i, v in enumerate(value))
        if self.unique and len(set(items)) != len(items):
            raise ConfigError(key, value, "expected no duplicates")
        if self.increasing and any(b <= a for a, b in zip(items, items[1:])):
            raise ConfigError(key, value, "expected strictly increasing values")
        return items


class Nested(Check):
    def __init__(self, cls: type):
        self.cls = cls

    def __call__(self, key, value):
        return build(self.cls, value, key)


class MapOf(Check):
    """A mapping name -> dataclass; returned as a tuple of (name, instance) pairs (hashable, frozen)."""

    def __init__(self, cls: type, min_len: int = 0):
        self.cls, self.min_len = cls, min_len

    def __call__(self, key, value):
        if not isinstance(value, dict) or len(value) < self.min_len:
            raise ConfigError(key, value, f"expected a mapping of at least {self.min_len} named section(s)")
        return tuple((str(k), build(self.cls, v, f"{key}.{k}")) for k, v in value.items())


def spec(check: Check, default: Any = dataclasses.MISSING, doc: str = "") -> Any:
    """A dataclass field validated by `check`; without a default the key is required."""
    return dataclasses.field(default=default, metadata={"check": check, "doc": doc})


def build(cls: type, mapping: Any, path: str):
    """Validate `mapping` against dataclass `cls` (unknown, missing and bad keys are errors)."""
    if not isinstance(mapping, dict):
        raise ConfigError(path, mapping, f"expected a mapping with keys {[f.name for f in dataclasses.fields(cls)]}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in mapping:
        if key not in fields:
            raise ConfigError(f"{path}.{key}", mapping[key], f"unknown key; allowed keys: {sorted(fields)}")
    values = {}
    for name, f in fields.items():
        key = f"{path}.{name}" if path else name
        if name not in mapping:
            if f.default is dataclasses.MISSING:
                raise ConfigError(key, None, "this key is required")
            values[name] = f.default
            continue
        values[name] = f.metadata["check"](key, mapping[name])
    return cls(**values)
