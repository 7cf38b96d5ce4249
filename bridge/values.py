"""Loosely typed JSON values read strictly: the checks every reader of client and upstream JSON shares.

JSON has one number type and Python's ``bool`` is an ``int``: ``isinstance(x, int)`` lets
``true`` through as 1. These helpers say once what counts as an integer, a number and a string.
"""
from __future__ import annotations

from typing import Any, TypeGuard


def as_int(value: Any) -> int | None:
    """Return ``value`` if it is a JSON integer (``2``, or ``2.0`` as some servers write it), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def is_int(value: Any) -> TypeGuard[int]:
    """Whether ``value`` is an int and not a bool (no float: a count the client sent must be whole)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> TypeGuard[int | float]:
    """Whether ``value`` is a JSON number (int or float, not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def str_of(obj: dict[str, Any], key: str) -> str:
    """Return ``obj[key]`` if it is a string, else "": most fields are optional and loosely typed."""
    value = obj.get(key)
    return value if isinstance(value, str) else ""
