"""Parameter validators for every kind of component: losses, datasets, models, strategies (and executors).

A component checks its constructor parameters with these functions instead of hand-written ``isinstance``
tests, so every bad value fails the same way: a one-line :class:`~w2s_harness.ConfigError` of the form ::

    <owner>: <name> must be <what is allowed>, got <repr(value)>

``owner`` is the component as its user sees it (``"loss 'logconf'"``, ``"dataset 'tweets'"``,
``"model 'hf:bert-base'"``, ``"strategy 'filter'"``) and ``name`` the parameter as it is spelled in a config
file, e.g. ``"dataset 'tweets': keep_frac must be a number in (0, 1], got 1.5"``.

Each validator returns the value converted to the plain Python type its name promises (``float``, ``int``,
``bool``, ``str``), so ``self.x = check_int(x, "x", owner=owner, lo=0)`` stores a value that hashes and
serialises the same whether it came from TOML, the CLI or numpy. With ``optional=True`` the value ``None`` is
accepted and returned as is, and the message ends in ``or omitted`` (``"must be an integer >= 1 or omitted"``).
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
from collections.abc import Iterable
from typing import Any

from .errors import ConfigError

__all__ = ["check_bool", "check_choice", "check_int", "check_number", "check_path", "check_str"]


def _fmt(bound: float) -> str:
    """A bound as users write it: ``0`` not ``0.0``, ``0.999`` not ``0.99900000000000000``."""
    if isinstance(bound, float) and bound.is_integer():
        return str(int(bound))
    return repr(bound) if isinstance(bound, float) else str(bound)


def _interval(lo, hi, lo_open: bool = False, hi_open: bool = False) -> str:
    """`` in [lo, hi]``, `` in (lo, hi]``, `` >= lo``, `` > lo``, `` <= hi``, `` < hi`` or ``""``."""
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {_fmt(lo)}"
    if hi is not None:
        return f" {'<' if hi_open else '<='} {_fmt(hi)}"
    return ""


def _fail(owner: str, name: str, what: str, value: Any, optional: bool, hint: str = "") -> ConfigError:
    return ConfigError(f"{owner}: {name} must be {what}{' or omitted' if optional else ''}, got {value!r}{hint}")


def check_number(value: Any, name: str, *, owner: str, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False, hi_open: bool = False, optional: bool = False) -> float | None:
    """Check that ``value`` is a finite real number within the given bounds, and return it as a ``float``.

    ``check_number(1, "keep_frac", owner="strategy 'filter'", lo=0, hi=1, lo_open=True)`` returns ``1.0``.

    :param value: the parameter's value. ``int``, ``float`` and numpy scalars are numbers; ``bool`` is not
        (``True`` is rejected, not read as 1), nor is a string such as ``"0.5"``. NaN and ``±inf`` are always
        rejected.
    :param name: the parameter's name, as spelled in a config file.
    :param owner: the component, as users see it: ``"loss 'logconf'"``, ``"dataset 'tweets'"``, ...
    :param lo: lower bound, inclusive (``lo <= value``) unless ``lo_open`` (``lo < value``); ``None``: unbounded.
    :param hi: upper bound, inclusive (``value <= hi``) unless ``hi_open`` (``value < hi``); ``None``: unbounded.
    :param lo_open: exclude ``lo`` itself.
    :param hi_open: exclude ``hi`` itself.
    :param optional: accept ``None`` (returned as ``None``); the message then ends in ``or omitted``.
    :returns: ``float(value)``, or ``None`` for an omitted optional value.
    :raises ConfigError: one line, ``"<owner>: <name> must be a number<bounds>, got <value!r>"``. ``<bounds>``
        is ``" in [lo, hi]"`` with ``(`` / ``)`` for an open side when both bounds are given, else ``" >= lo"``,
        ``" > lo"``, ``" <= hi"`` or ``" < hi"``; without bounds the message reads ``"a finite number"``.
        E.g. ``"dataset 'tweets': keep_frac must be a number in (0, 1], got 1.5"``.
    """
    if optional and value is None:
        return None
    bounds = _interval(lo, hi, lo_open, hi_open)
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        x = float(value)
        ok = not (lo is not None and (x <= lo if lo_open else x < lo)
                  or hi is not None and (x >= hi if hi_open else x > hi))
    if not ok:
        raise _fail(owner, name, "a number" + bounds if bounds else "a finite number", value, optional)
    return x


def check_int(value: Any, name: str, *, owner: str, lo: int | None = None, hi: int | None = None,
              optional: bool = False) -> int | None:
    """Check that ``value`` is an integer in ``[lo, hi]`` (both inclusive), and return it as an ``int``.

    :param value: the parameter's value. ``int`` and numpy integers are accepted; ``bool``, floats (even
        ``2.0``) and strings are rejected.
    :param name: the parameter's name, as spelled in a config file.
    :param owner: the component, as users see it (see :func:`check_number`).
    :param lo: inclusive lower bound (``lo <= value``); ``None``: unbounded.
    :param hi: inclusive upper bound (``value <= hi``); ``None``: unbounded.
    :param optional: accept ``None`` (returned as ``None``); the message then ends in ``or omitted``.
    :returns: ``int(value)``, or ``None`` for an omitted optional value.
    :raises ConfigError: one line, ``"<owner>: <name> must be an integer<bounds>, got <value!r>"`` with
        ``<bounds>`` one of ``" in [lo, hi]"``, ``" >= lo"``, ``" <= hi"`` or nothing, e.g.
        ``"strategy 'ensemble': bags must be an integer >= 1, got 0"``.
    """
    if optional and value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
            or lo is not None and value < lo or hi is not None and value > hi):
        raise _fail(owner, name, "an integer" + _interval(lo, hi), value, optional)
    return int(value)


def check_bool(value: Any, name: str, *, owner: str, optional: bool = False) -> bool | None:
    """Check that ``value`` is ``True`` or ``False`` (not ``0``/``1``, not ``"true"``), and return it.

    :param optional: accept ``None`` (returned as ``None``); the message then ends in ``or omitted``.
    :returns: ``value``, or ``None`` for an omitted optional value.
    :raises ConfigError: one line, ``"<owner>: <name> must be true or false, got <value!r>"`` (``true`` and
        ``false`` as TOML spells them).
    """
    if optional and value is None:
        return None
    if not isinstance(value, bool):
        raise _fail(owner, name, "true or false", value, optional)
    return value


def check_choice(value: Any, name: str, choices: Iterable[Any], *, owner: str, optional: bool = False) -> Any:
    """Check that ``value`` is one of ``choices`` (compared with ``==``; ``True`` never matches ``1``), and
    return it.

    :param choices: the allowed values, in the order the message lists them.
    :param optional: accept ``None`` (returned as ``None``); the message then ends in ``or omitted``.
    :returns: ``value``, or ``None`` for an omitted optional value.
    :raises ConfigError: one line, ``"<owner>: <name> must be one of a, b, c, got <value!r>"`` (strings
        unquoted, other choices as ``repr``). When ``value`` is a string close to a choice
        (:func:`difflib.get_close_matches`, cutoff 0.6) the message ends with the closest one:
        ``"loss 'kl': direction must be one of forward, reverse, got 'foward'; did you mean 'forward'?"``.
    """
    choices = list(choices)
    if optional and value is None:
        return None
    if not any(c == value and isinstance(c, bool) == isinstance(value, bool) for c in choices):
        names = ", ".join(c if isinstance(c, str) else repr(c) for c in choices)
        hint = ""
        if isinstance(value, str):
            close = difflib.get_close_matches(value, [c for c in choices if isinstance(c, str)], n=1)
            if close:
                hint = f"; did you mean {close[0]!r}?"
        raise _fail(owner, name, f"one of {names}", value, optional, hint)
    return value


def check_str(value: Any, name: str, *, owner: str, non_empty: bool = True, optional: bool = False,
              what: str | None = None) -> str | None:
    """Check that ``value`` is a ``str`` (non-empty and not only whitespace, by default), and return it.

    :param non_empty: reject ``""`` and whitespace-only strings.
    :param optional: accept ``None`` (returned as ``None``); the message then ends in ``or omitted``.
    :param what: how the message names the expected value, e.g. ``"a column name"``; default
        ``"a non-empty string"`` (``"a string"`` with ``non_empty=False``).
    :returns: ``value``, or ``None`` for an omitted optional value.
    :raises ConfigError: one line, ``"<owner>: <name> must be <what>, got <value!r>"``, e.g.
        ``"dataset 'local': label_column must be a column name, got 3"``.
    """
    if optional and value is None:
        return None
    if not isinstance(value, str) or non_empty and not value.strip():
        default = "a non-empty string" if non_empty else "a string"
        raise _fail(owner, name, what or default, value, optional)
    return value


def check_path(value: Any, name: str, *, owner: str, optional: bool = False, what: str = "a path") -> str | None:
    """Check that ``value`` is a non-empty path (a ``str`` or an :class:`os.PathLike`), and return it as ``str``.

    The path need not exist (it may be a glob, a hub id, or be created later).

    :param optional: accept ``None`` (returned as ``None``); the message then ends in ``or omitted``.
    :param what: how the message names the expected value; default ``"a path"``.
    :returns: ``str(value)``, or ``None`` for an omitted optional value.
    :raises ConfigError: one line, ``"<owner>: <name> must be <what>, got <value!r>"``, e.g.
        ``"dataset 'image-folder': path must be a folder path, got 3"``.
    """
    if optional and value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise _fail(owner, name, what, value, optional)
    return str(value)
