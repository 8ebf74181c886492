"""Graceful stops: SIGINT / SIGTERM ask the run to stop after its current unit of work (a stage, or one chunk of an
encoder pass), so everything finished is stored and ``results.json`` says ``partial``."""

from __future__ import annotations


class StopRequested(BaseException):
    """Raised at a safe point after a stop was requested. A ``BaseException`` (like ``KeyboardInterrupt``) so that
    ``except Exception`` handlers in plugins or stage code do not swallow it.

    :ivar signum: the signal that asked for the stop (``signal.SIGINT`` / ``signal.SIGTERM``), or 0.
    """

    def __init__(self, signum: int = 0):
        super().__init__(f"stop requested (signal {signum})")
        self.signum = signum
