"""Progress as plain lines, for ``w2s-harness run`` when stderr is not a terminal (a log file, a pipe, CI).

Rich's live bars need a terminal: without one rich draws them once, when the run ends, so a log shows nothing
while a 6-minute encoder pass runs. Here every computed stage gets a ``started`` and a ``finished ... in 12.3 s``
line, an encoder pass (any inner loop the runner reports) a line per :data:`STEP_PERCENT` of its rows, and stages
served from the stage cache one line per batch of them (a re-run of a cached experiment would otherwise print
dozens of lines that say nothing).
"""

from __future__ import annotations

import time

#: An inner loop prints a line each time it crosses another multiple of this percentage.
STEP_PERCENT = 10


class LineProgress:
    """The CLI's progress callbacks (``inner``, ``on_start``, ``on_stage``) writing lines to ``console``; a
    context manager like rich's ``Progress`` (leaving it prints the cached stages not yet reported)."""

    def __init__(self, console):
        self.console = console
        self.cached = 0  # cache hits not yet reported
        self.cached_at = (0, 0)  # (done, total) at the last of them
        self.started: dict[str, float] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._flush_cached()

    def _line(self, text: str) -> None:
        self._flush_cached()
        self._print(text)

    def _print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def _flush_cached(self) -> None:
        """Report the cache hits since the last line, before any other line so the counts stay in order."""
        if self.cached:
            done, total = self.cached_at
            count, self.cached = self.cached, 0
            self._print(f"[{done}/{total}] {count} stage{'s' if count != 1 else ''} loaded from the stage cache")

    def inner(self, description: str, total: int, unit: str = "rows"):
        """``progress(description, total, unit) -> advance(n)``: a line at every :data:`STEP_PERCENT` of
        ``total`` (``unit``: what is counted, for the first line)."""
        state = {"done": 0, "shown": -1, "t0": None}

        def advance(n: int = 1) -> None:
            if state["t0"] is None:
                state["t0"] = time.perf_counter()
                self._line(f"{description}: started ({total} {unit})")
            state["done"] += n
            percent = 100 * state["done"] // max(total, 1)
            step = min(percent, 100) // STEP_PERCENT * STEP_PERCENT
            if step > state["shown"] and step > 0:
                state["shown"] = step
                elapsed = time.perf_counter() - state["t0"]
                self._line(f"{description}: {step}% ({min(state['done'], total)}/{total}) after {elapsed:.0f} s")

        return advance

    def on_start(self, stage) -> None:
        self.started[stage.id] = time.perf_counter()
        self._line(f"started  {stage.name} (seed {stage.seed}, {stage.kind})")

    def on_stage(self, stage, record, done: int, total: int) -> None:
        if record.cached:
            self.cached += 1
            self.cached_at = (done, total)
            if done == total:
                self._flush_cached()
            return
        seconds = record.seconds
        if seconds is None and stage.id in self.started:
            seconds = time.perf_counter() - self.started[stage.id]
        took = f" in {seconds:.1f} s" if seconds is not None else ""
        self._line(f"[{done}/{total}] finished {stage.name} (seed {stage.seed}){took}")
