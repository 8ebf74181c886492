"""Where stages run: in this process, or with CPU linear-head stages spread over forked worker processes.

Why processes: a linear head on cached features is a few thousand AdamW steps on ``(32, d)`` tensors, so its cost
is Python and per-op dispatch overhead on one core, not FLOPs. Threads would serialise on the GIL; processes
scale with the cores. A run's heads (weak, ceiling, transfers, bootstrap rungs and folds, every seed) are
independent once their upstream labels exist, so the executor keeps ``workers`` of them in flight.

Why ``fork``: a worker inherits the run context as it is in memory (plugins, including ones passed in-process to
``cli.main(plugins=...)``, the loaded dataset, the embedded features), so nothing is pickled but the stage and
its upstream arrays, and no worker re-embeds anything. Features are therefore computed in the parent, with all
its threads, before the first fork. Workers use one intra-op thread each (the head loop does anyway).

Only CPU linear-probe ``train`` stages go to workers. Fine-tuning stages run in this process with all threads
(while no worker runs, so the cores are not oversubscribed); the cheap ops (label, combine, filter) run here too.
CUDA runs stay in-process: a forked child cannot use the parent's CUDA context.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool

from ._components import is_feature_model
from ._errors import ResourceError
from ._ops import RunContext, execute
from ._plan import Stage
from ._results import StageRecord

#: What one stage returns: its record and its arrays.
Finished = tuple[StageRecord, dict]

#: Upper bound for ``workers = 0`` (auto): past this, memory bandwidth and fork start-up stop paying off.
MAX_AUTO_WORKERS = 8


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def resolve_workers(requested: int) -> int:
    """``requested`` worker processes, or for 0 (auto) one per available core up to :data:`MAX_AUTO_WORKERS`."""
    if requested > 0:
        return requested
    return min(available_cores(), MAX_AUTO_WORKERS)


def poolable(ctx: RunContext, stage: Stage) -> bool:
    """Whether ``stage`` may run in a worker: a linear probe trained on cached features on the CPU."""
    if stage.op != "train" or ctx.device.type != "cpu":
        return False
    return is_feature_model(ctx.model(stage.spec["model"]))


# The worker side. ``_WORKER_CTX`` is set in each forked child by the pool initializer (its own copy).
_WORKER_CTX: RunContext | None = None


def _init_worker(ctx: RunContext) -> None:
    global _WORKER_CTX
    import signal

    import torch

    # Ctrl-C reaches the whole process group: the parent decides when to stop and lets the stages its workers run
    # finish first (they are the unit of work), so workers ignore SIGINT. SIGTERM gets its default back (a fork
    # inherits the parent's graceful handler): the pool terminates its workers with SIGTERM when one of them died,
    # and a worker that survived it would hang that shutdown.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    torch.set_num_threads(1)
    ctx.progress = None  # the parent owns the terminal
    ctx.check_stop = None
    _WORKER_CTX = ctx


def _noop() -> None:
    return None


def _run_in_worker(stage: Stage, upstream: list) -> Finished:
    assert _WORKER_CTX is not None, "worker used without its initializer"
    return execute(_WORKER_CTX, stage, upstream)


def _prepare_parent(ctx: RunContext, stages: Sequence[Stage]) -> None:
    """Embed every model the pooled stages need, and do the optimiser's lazy imports, before forking."""
    from . import _training as training

    seen = set()
    for stage in stages:
        model = ctx.model(stage.spec["model"])
        key = model.feature_key()
        if key not in seen:
            seen.add(key)
            ctx.inputs(model, [])
    training.warm_up()


def _start_pool(ctx: RunContext, n: int) -> cf.ProcessPoolExecutor:
    """A pool of ``n`` forked workers, all forked now: a worker forked later would inherit the stage locks this
    process holds at that moment and, were this process killed, keep them held."""
    pool = cf.ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("fork"),
                                  initializer=_init_worker, initargs=(ctx,))
    for f in [pool.submit(_noop) for _ in range(n)]:
        f.result()
    return pool


def _worker_died(stages: Sequence[Stage]) -> ResourceError:
    names = ", ".join(repr(s.name) for s in stages)
    return ResourceError(f"a worker process died (killed, or out of memory) while running {names}; finished "
                         f"stages are kept: run the same command to resume (--workers 1 runs every stage in the "
                         f"main process)")


#: What :func:`run_stages`'s ``claim`` returns: compute the stage (its lock is now held), another process is
#: computing it (try again later), or it is finished (another run stored it; the caller has recorded it).
CLAIMED, BUSY, DONE = "claimed", "busy", "done"
#: Seconds between looks at stages another run is computing.
POLL_SECONDS = 0.2


def run_stages(
    ctx: RunContext,
    pending: Sequence[Stage],
    upstream: Callable[[Stage], list],
    is_done: Callable[[str], bool],
    on_result: Callable[[Stage, Finished], None],
    *,
    workers: int,
    claim: Callable[[Stage], str] | None = None,
    release: Callable[[Stage], None] | None = None,
    check_stop: Callable[[], None] | None = None,
    on_failure: Callable[[Stage, BaseException], None] | None = None,
    fail_fast: bool = False,
) -> None:
    """Run ``pending`` (topologically ordered) and call ``on_result`` in this process as each one finishes.

    :param upstream: the finished dependencies of a stage, as the op expects them.
    :param is_done: whether a stage id has finished (cached or run).
    :param workers: worker processes for pooled stages (1 = everything in this process, in plan order).
    :param claim: called before a stage starts: :data:`CLAIMED`, :data:`BUSY` or :data:`DONE` (default: claimed).
    :param release: called when a claimed stage fails (``on_result`` releases a finished one).
    :param check_stop: raises :class:`~w2s_harness._interrupts.StopRequested` when the run should stop; checked
        before each stage starts. Stages already running finish and are reported first.
    :param on_failure: called with a stage whose op raised. With it, a failed stage does not stop the run: the
        stages that depend on it are skipped and every other stage runs (unless ``fail_fast``); without it, the
        first stage error is raised as it always was.
    :param fail_fast: with ``on_failure``, start no new stage once one failed.
    :raises: a run-level error (a worker died, ``on_result`` failed: the disk is full...), the stop, or without
        ``on_failure`` the first stage error; always after every stage already running has finished and been
        reported (their results are kept).
    """
    from ._interrupts import StopRequested

    claim = claim or (lambda stage: CLAIMED)
    release = release or (lambda stage: None)
    pooled_ids = {s.id for s in pending if workers > 1 and poolable(ctx, s)}
    if len(pooled_ids) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        pooled_ids = set()
    pool = None
    n_workers = min(workers, len(pooled_ids))
    todo = list(pending)
    running: dict[cf.Future, Stage] = {}
    error: BaseException | None = None
    stop: StopRequested | None = None
    broken: set[str] = set()  # failed stages, and the stages skipped because one of their inputs is in here

    def halted() -> bool:
        nonlocal stop
        if stop is None and error is None and check_stop is not None:
            try:
                check_stop()
            except StopRequested as exc:
                stop = exc
        return stop is not None or error is not None or (fail_fast and bool(broken))

    def failed(stage: Stage, exc: BaseException) -> None:
        """A stage's own op raised: report it and go on (``on_failure``), or make it the run's error."""
        nonlocal error
        release(stage)
        if on_failure is None:
            error = error or exc
            return
        broken.add(stage.id)
        on_failure(stage, exc)

    try:
        if pooled_ids:
            _prepare_parent(ctx, [s for s in pending if s.id in pooled_ids])
            pool = _start_pool(ctx, n_workers)
        while True:
            progressed = False
            for stage in list(todo):
                if halted():
                    break
                if any(d in broken for d in stage.deps):  # an input failed: it cannot run in this run
                    todo.remove(stage)
                    broken.add(stage.id)
                    progressed = True
                    continue
                if not all(is_done(d) for d in stage.deps):
                    continue
                pooled = stage.id in pooled_ids
                if pooled and len(running) >= n_workers:
                    continue
                if not pooled and stage.op == "train" and running:
                    continue  # a fine-tuning stage waits for an idle machine
                state = claim(stage)
                if state == BUSY:
                    continue
                todo.remove(stage)
                progressed = True
                if state == DONE:
                    continue
                if pooled:
                    try:
                        running[pool.submit(_run_in_worker, stage, upstream(stage))] = stage
                    except BrokenProcessPool:  # a worker died; its stage's future reports it too
                        release(stage)
                        error = error or _worker_died(list(running.values()) or [stage])
                    continue
                try:
                    result = execute(ctx, stage, upstream(stage))
                except Exception as exc:  # noqa: BLE001 - reported; the other stages go on
                    failed(stage, exc)
                    continue
                try:
                    on_result(stage, result)
                except Exception as exc:  # noqa: BLE001 - storing failed (disk full): the run's error
                    release(stage)
                    error = exc
            if not running:
                if halted() or not todo:
                    break
                if not progressed:  # every ready stage is being computed by another run
                    time.sleep(POLL_SECONDS)
                continue
            done, _ = cf.wait(running, timeout=POLL_SECONDS, return_when=cf.FIRST_COMPLETED)
            for future in done:
                stage = running.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:  # every running stage reports it; which worker died is unknown
                    release(stage)
                    error = error or _worker_died([stage, *running.values()])
                    continue
                except Exception as exc:  # noqa: BLE001 - the stage's own error, raised in the worker
                    failed(stage, exc)
                    continue
                try:
                    on_result(stage, result)
                except Exception as exc:  # noqa: BLE001 - the first error is raised below
                    release(stage)
                    error = error or exc
    except BaseException:
        for stage in running.values():
            release(stage)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        raise
    if pool is not None:
        pool.shutdown(wait=True)
    if error is not None:
        raise error
    if stop is not None:
        raise stop
    if todo and not (fail_fast and broken):  # pragma: no cover - the plan is a DAG in topological order
        raise RuntimeError(f"stages never became ready: {[s.name for s in todo]}")


__all__ = ["BUSY", "CLAIMED", "DONE", "available_cores", "poolable", "resolve_workers", "run_stages"]
