"""User-facing errors: one line that names the problem and the fix.

The CLI prints ``error: <message>`` for any :class:`W2SError` and exits with status 2, never a traceback.
"""

from __future__ import annotations

import difflib


class W2SError(Exception):
    """Base class for errors caused by user input (config, names, data); shown without a traceback."""


class ConfigError(W2SError):
    """Invalid configuration: unknown key, bad value, wrong type."""


class UnknownComponentError(W2SError, KeyError):
    """A component name that no plugin registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class PluginError(W2SError):
    """A plugin failed to load, or two plugins registered the same name."""


class DataError(W2SError):
    """Input data is malformed (missing column, no rows, bad labels)."""


class TrainingError(W2SError):
    """Training diverged (NaN/inf loss) or cannot proceed."""


class ResourceError(W2SError):
    """The machine ran out of something a stage needs (memory, disk space) or cannot write where it must."""


def did_you_mean(name: str, choices) -> str:
    """Return ``" Did you mean: a, b?"`` for close matches (or an empty string)."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""


class InputError(W2SError, ValueError):
    """A tensor or array argument has the wrong shape, dtype or values (e.g. targets not summing to 1)."""


def last_line(exc: BaseException) -> str:
    """``"<type>: <last non-empty line of the message>"``: what a failure report shows of an error (a remote
    error's message ends with the original error; its traceback comes before)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}".rstrip(": ")
