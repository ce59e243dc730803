"""Reading one mapping of a configuration file so that every key is accounted for.

A ``ConfigSection`` hands out its keys typed (text, flag, whole number, duration as distribution writes it) and
remembers which were taken; ``finish`` then refuses the rest by name. Messages name the file, the dotted path of the
key and, when an environment variable set it, the variable (``configenv.py``), in one line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from regtool.durations import parse_duration
from regtool.errors import UsageError
from regtool.server.configenv import EnvOverrides

__all__ = ["ConfigReader", "ConfigSection", "value_kind"]

# A duration without a unit, which Go's decoder (distribution's) would read as nanoseconds.
_BARE_NUMBER = re.compile(r"^\s*[+-]?\d+(\.\d*)?\s*$")


class ConfigReader:
    """The file's name (for messages), where the environment set what, and the notes gathered."""

    def __init__(self, source: str, overrides: EnvOverrides) -> None:
        self.source = source
        self.overrides = overrides
        self.notes: list[str] = []

    def where(self, path: tuple[str, ...]) -> str:
        dotted = ".".join(path) or "(top)"
        variable = self.overrides.origin(path)
        return f"{self.source}: {dotted}" + (f" (from {variable})" if variable else "")


class ConfigSection:
    """One mapping of the file; every key must be taken (``take``/``section``) or ``finish`` names it."""

    def __init__(self, reader: ConfigReader, path: tuple[str, ...], data: Any) -> None:
        if data is None:
            data = {}
        self.reader = reader
        self.path = path
        if not isinstance(data, dict):
            raise self.error(f"expected a mapping, not {value_kind(data)}")
        self.data: dict[str, Any] = {str(k): v for k, v in data.items()}
        self.taken: set[str] = set()

    def error(self, message: str, key: str | None = None) -> UsageError:
        path = self.path if key is None else (*self.path, key)
        return UsageError(f"{self.reader.where(path)}: {message}")

    def note(self, key: str, message: str) -> None:
        if key in self.data:
            self.reader.notes.append(f"{self.reader.where((*self.path, key))}: {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def take(self, key: str) -> Any:
        self.taken.add(key)
        return self.data.get(key)

    def accept(self, *keys: str) -> None:
        """Keys that are valid and need nothing done (their note, if any, was given by ``note``)."""
        self.taken.update(keys)

    def section(self, key: str) -> ConfigSection:
        return ConfigSection(self.reader, (*self.path, key), self.take(key))

    def text(self, key: str) -> str | None:
        value = self.take(key)
        if value is None:
            return None
        if isinstance(value, bool | dict | list):
            raise self.error(f"expected a string, not {value_kind(value)}", key)
        return str(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.take(key)
        if value is None:
            return default
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise self.error(f"expected true or false, not {value!r}", key)
        return value

    def integer(self, key: str) -> int | None:
        value = self.take(key)
        if value is None:
            return None
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"expected a whole number, not {value!r}", key)
        return value

    def duration(self, key: str) -> float | None:
        """Seconds, from a duration as distribution writes it (``168h``, ``30m``, ``10s``, ``1h30m``)."""
        value = self.take(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise self.error(f"{value!r} is not a duration (e.g. 10s, 30m, 168h, 1h30m)", key)
        if _BARE_NUMBER.match(str(value)):
            if float(value) == 0:
                return 0.0
            raise self.error(
                f"{value!r} has no unit: write it as distribution does, e.g. 10s, 30m or 168h "
                "(distribution would read a bare number as nanoseconds)",
                key,
            )
        try:
            return parse_duration(str(value))
        except UsageError:
            raise self.error(f"{value!r} is not a duration (e.g. 10s, 30m, 168h, 1h30m)", key) from None

    def finish(self, unsupported: Mapping[str, str] | None = None) -> None:
        """Refuse every key not taken: a specific reason from ``unsupported``, or the general one."""
        for key in self.data:
            if key in self.taken:
                continue
            reason = (unsupported or {}).get(key, "not supported by regtool serve")
            raise self.error(reason, key)


def value_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int | float):
        return "a number"
    return f"{value!r}"
