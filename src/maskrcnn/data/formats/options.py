"""A reader's options checked against its signature before anything is read.

Options come as Python values or, from the command line's ``-o KEY=VALUE``, as what YAML makes of the
text: ``class_names=[balloon, kite]`` is a list, ``class_names=balloon,kite`` the text ``"balloon,kite"``.
A reader iterating that text would take each letter for a class, so values are held against the
reader's type hints: a text where a list of texts (or of numbers) is expected is split at its commas, a
single value where a list of such values is expected becomes a list of one, and anything else that does
not fit is a :class:`~maskrcnn.data.dataset.DataError` naming the option, its value and what it should
be.
"""

from __future__ import annotations

import collections.abc
import os
import types
import typing
from typing import Any

from maskrcnn.data.dataset import DataError

__all__ = ["checked_options"]

_COLLECTIONS = (collections.abc.Sequence, collections.abc.Collection)


def checked_options(format: str, reader: type, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` for ``reader`` (whose ``__init__`` is type-hinted), converted as the module docstring
    says.

    Raises:
        DataError: a value that fits neither the hint nor a conversion.
    """
    hints = typing.get_type_hints(reader.__init__)
    checked = {}
    for key, value in options.items():
        hint = hints.get(key)
        if hint is None or key == "transforms":  # unhinted, or a Python object no file names
            checked[key] = value
            continue
        converted = _convert(value, hint)
        if not _fits(converted, hint):
            raise DataError(f"--format {format}: option {key}={value!r} should be {_describe(hint)}")
        checked[key] = converted
    return checked


def _arms(hint: Any) -> tuple[Any, ...]:
    """The members of a union (``X | None``), or the hint alone."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _convert(value: Any, hint: Any) -> Any:
    if _fits(value, hint):
        return value
    for arm in _arms(hint):
        if typing.get_origin(arm) in _COLLECTIONS:
            (item,) = typing.get_args(arm)
            if isinstance(value, str) and item is str:
                return [part.strip() for part in value.split(",") if part.strip()]
            if isinstance(value, str) and item in (int, float):
                # "0.05,0.1" (YAML reads it as one text): numbers at the commas, or left as it is
                try:
                    return [item(part) for part in value.split(",")]
                except ValueError:
                    return value
            if _fits(value, item):
                return [value]
    return value


def _fits(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    if hint is type(None) or hint is None:
        return value is None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arm) for arm in typing.get_args(hint))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is os.PathLike or hint is os.PathLike:
        return isinstance(value, os.PathLike)
    if origin in _COLLECTIONS:
        (item,) = typing.get_args(hint)
        return isinstance(value, (list, tuple, set, frozenset)) and all(_fits(v, item) for v in value)
    if origin is collections.abc.Mapping:
        key_hint, value_hint = typing.get_args(hint)
        return isinstance(value, dict) and all(
            _fits(k, key_hint) and _fits(v, value_hint) for k, v in value.items()
        )
    return True  # a type this module does not know: the reader checks it


def _describe(hint: Any) -> str:
    """What a value of ``hint`` looks like, in the words of ``-o KEY=VALUE``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        arms = [
            a
            for a in typing.get_args(hint)
            if a is not type(None) and typing.get_origin(a) is not os.PathLike
        ]
        return " or ".join(_describe(a) for a in arms)
    if origin in _COLLECTIONS:
        (item,) = typing.get_args(hint)
        if item is str:
            return "a list of texts ([a, b] or a,b)"
        if item in (int, float):
            return f"a list of {'whole numbers' if item is int else 'numbers'} ([1, 2] or 1,2)"
        return f"a list ([...]) of {_describe(item)}"
    if origin is collections.abc.Mapping:
        return "a mapping such as {1: person, 2: car}"
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a text"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))
