"""A result's fields as JSON values: the one ``to_json`` shape every result module shares."""

from __future__ import annotations

import dataclasses
from typing import Any

from regtool.digest import Digest

__all__ = ["fields_json"]


def fields_json(result: Any, *, omit_none: tuple[str, ...] = ()) -> dict[str, Any]:
    """A result's fields as JSON values, in the order they are declared: digests as strings, tuples as lists,
    nested results by their own ``to_json``, ``seconds`` to the millisecond; ``omit_none`` fields only when set."""
    data: dict[str, Any] = {}
    for item in dataclasses.fields(result):
        value = getattr(result, item.name)
        if value is None and item.name in omit_none:
            continue
        data[item.name] = round(value, 3) if item.name == "seconds" else _json_value(value)
    return data


def _json_value(value: Any) -> Any:
    if isinstance(value, Digest):
        return str(value)
    if isinstance(value, tuple | list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    to_json = getattr(value, "to_json", None)
    return to_json() if callable(to_json) else value
