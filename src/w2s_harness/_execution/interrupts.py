"""Graceful stops: SIGINT / SIGTERM ask the run to stop after its current unit of work (a stage, or one chunk of an
encoder pass), so everything finished is stored and ``results.json`` says ``partial``."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from contextlib import contextmanager


class StopRequested(BaseException):
    """Raised at a safe point after a stop was requested. A ``BaseException`` (like ``KeyboardInterrupt``) so that
    ``except Exception`` handlers in plugins or stage code do not swallow it.

    :ivar signum: the signal that asked for the stop (``signal.SIGINT`` / ``signal.SIGTERM``), or 0.
    """

    def __init__(self, signum: int = 0):
        super().__init__(f"stop requested (signal {signum})")
        self.signum = signum


class StopFlag:
    """Set by a signal handler, checked by the run at safe points (:meth:`check`).

    :ivar signum: the first signal received (0 while none was).
    """

    def __init__(self):
        self.signum = 0

    def request(self, signum: int) -> None:
        if not self.signum:
            self.signum = signum

    def check(self) -> None:
        """Raise :class:`StopRequested` if a stop was requested."""
        if self.signum:
            raise StopRequested(self.signum)


#: Exit status of a run stopped by a signal: 128 + the signal number (130 for SIGINT, 143 for SIGTERM).
def exit_code(signum: int) -> int:
    return 128 + int(signum)


@contextmanager
def graceful_signals(flag: StopFlag, on_first: Callable[[int], None] | None = None):
    """While active, the first SIGINT / SIGTERM sets ``flag`` (the run stops after its current unit of work) and
    calls ``on_first(signum)``; a second one raises ``KeyboardInterrupt`` at once (finished stages are kept and
    ``results.json`` is still written). Outside the main thread signals cannot be handled, so this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.signum:
            raise KeyboardInterrupt
        flag.request(signum)
        if on_first is not None:
            on_first(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
