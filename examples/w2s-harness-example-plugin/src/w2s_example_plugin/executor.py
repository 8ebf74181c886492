"""A thread executor: every stage of a run computed in a thread pool of this process.

``w2s-harness run --executor example-threads`` selects it (``[run] executor = "example-threads"`` in a config
file). An executor is an object with ``run(execution)`` (the :class:`w2s_harness.Executor` protocol); the
:class:`w2s_harness.Execution` it receives holds the run's pending stages, one part per dataset, and does the
rest: :meth:`~w2s_harness.Execution.schedule` runs a part's stages in dependency order on any
``concurrent.futures`` pool, takes each stage's lock in the stage store, stores and reports every result, skips
the stages whose inputs failed (``run.fail_fast`` stops at the first failure) and honours Ctrl-C / SIGTERM.

Threads share the GIL, so this is no faster than the ``local`` executor for the small linear heads, but it shows
the protocol in a dozen lines, and it suits stages that release the GIL (numpy, GPU kernels, I/O).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

#: The prefix of the pool's thread names (stages computed in the pool run in threads named ``w2s-example-stage_N``).
THREAD_PREFIX = "w2s-example-stage"


class ThreadExecutor:
    """Compute up to ``run.workers`` stages at once in a thread pool (0: one per CPU core, at most 4; 1: every
    stage in this thread, as ``schedule`` does without a pool)."""

    def run(self, execution) -> None:
        workers = execution.config.run.workers or min(4, os.cpu_count() or 1)
        for part in execution.parts:  # one dataset after the other
            execution.schedule(part, pool=self._pool, slots=workers)

    @staticmethod
    def _pool(n: int) -> ThreadPoolExecutor:
        # started by schedule() once the models that train on cached features have embedded their inputs;
        # every submitted task computes one stage with the part's own (shared, in-memory) run context
        return ThreadPoolExecutor(max_workers=n, thread_name_prefix=THREAD_PREFIX)
