"""Where stages run: the :class:`Executor` protocol every executor implements, the :class:`Execution` the runner hands
it, and the local executor (this process, with CPU linear-head stages spread over forked worker processes).

Executors are plugin components: ``w2s_register_executors`` fills their registry, ``run.executor`` (``--executor``)
names one. The built-in ``local`` (this module) and ``ray`` (:mod:`w2s_harness._execution.ray`) register through that hook
exactly as a third-party executor does (``w2s_harness.plugins.executors``).

Why processes for the local executor: a linear head on cached features is a few thousand AdamW steps on
``(32, d)`` tensors, so its cost is Python and per-op dispatch overhead on one core, not FLOPs. Threads would
serialise on the GIL; processes scale with the cores. A run's heads (weak, ceiling, transfers, bootstrap rungs and
folds, every seed) are independent once their upstream labels exist, so the executor keeps ``workers`` of them in
flight.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .._contracts.components import is_feature_model
from .._contracts.errors import ResourceError
from .._engine.ops import RunContext, execute
from .._engine.stage import StageRecord
from .._plan.planner import Stage

#: What one stage returns: its record and its arrays.
Finished = tuple[StageRecord, dict]

#: Upper bound for ``workers = 0`` (auto): past this, memory bandwidth and fork start-up stop paying off.
MAX_AUTO_WORKERS = 8

#: What :meth:`Execution.claim` returns: compute the stage (its lock is now held), another process is computing it
#: (try again later), or it is finished (another run stored it; it has been reported as cached).
CLAIMED, BUSY, DONE = "claimed", "busy", "done"
#: Seconds between looks at stages another run is computing.
POLL_SECONDS = 0.2


@runtime_checkable
class Executor(Protocol):
    """Runs the stages of a run that are not served from the stage store: where (this process, worker processes,
    a thread pool, a cluster) and in what order, within their dependencies.

    Register a factory with ``w2s_register_executors`` (``registry.add("my-executor", MyExecutor)``);
    ``run.executor = "my-executor"`` (``--executor my-executor``) selects it and the runner calls
    ``factory()`` (no parameters: an executor reads its settings from ``execution.config.run``), then
    :meth:`run` once per run. The built-in ``local`` and ``ray`` executors implement this protocol too.
    """

    def run(self, execution: Execution) -> None:
        """Compute every stage of ``execution.parts`` (or stop early) and report each one, in this process.

        The easy way is :meth:`Execution.schedule`, once per part, with a ``concurrent.futures`` pool: it
        orders stages by their dependencies, takes each stage's lock in the store, stores and reports results,
        applies the failure policy and the stop flag. An executor that schedules itself (a cluster) reports with
        :meth:`Execution.finished` / :meth:`Execution.stored`, :meth:`Execution.failed` and
        :meth:`Execution.skip`, and honours :meth:`Execution.check_stop` and :attr:`Execution.fail_fast`.

        Raise a run-level error (the store cannot be written, a worker process died) or the stop
        (:meth:`Execution.check_stop`), after every stage already running has finished and been reported. A
        stage's own error is reported with :meth:`Execution.failed`, not raised.

        :param execution: the run's pending stages and everything needed to compute and report them.
        """


@dataclass
class Part:
    """One dataset (or dataset split) of a run: its single-dataset ``config``, the in-process run ``context`` its
    stages are computed with, and ``stages``: the ones to compute, in dependency (topological) order."""

    config: Any
    context: RunContext
    stages: list[Stage]


@dataclass
class ContextFactory:
    """Builds a run context in another process (a cluster worker): a fresh plugin manager with the built-ins, the
    installed plugins and this run's in-process plugins (which must be importable there), for ``config`` and the
    run's output directory. Picklable: send it along with the stages."""

    output_dir: str
    plugins: list = field(default_factory=list)

    def __call__(self, config: Any) -> RunContext:
        from .._plugin_system.manager import create_plugin_manager

        return RunContext(pm=create_plugin_manager(self.plugins), config=config, output_dir=Path(self.output_dir))


def in_process_plugins(pm) -> list:
    """The plugins passed to this process in-process (``main(argv, plugins=[...])``): modules and objects, which a
    worker process registers too. Built-ins and installed entry points load there by themselves."""
    return [pm.pm.get_plugin(info.name) for info in pm.plugins if info.distribution == "(in-process)"]


class Execution:
    """What an :class:`Executor` receives: the stages to compute, how to compute one, how to report it, and the
    run's failure policy and stop flag. Created by the runner once per run; everything it reports is stored in the
    stage store, passed to the ``w2s_stage_end`` hook and ends up in ``results.json``.

    :ivar config: the run's :class:`~w2s_harness.RunConfig` (``config.run`` holds ``workers``, ``threads``,
        ``device`` ...).
    :ivar pm: the run's :class:`~w2s_harness.PluginManager`.
    :ivar parts: one part per dataset (or dataset split), run one after the other: each has ``config``,
        ``context`` and ``stages`` (those not served from the store, in dependency order).
    :ivar output_dir: the run's output directory; its ``stages/`` folder is the stage store.
    :ivar resume: whether stored stages are reused (``--no-resume`` recomputes them).
    """

    def __init__(self, config, pm, parts: Sequence[Part], output_dir: Path, *, resume: bool = True,
                 is_done: Callable[[str], bool], inputs: Callable[[Stage], list],
                 claim: Callable[[Stage], str] | None = None, release: Callable[[Stage], None] | None = None,
                 finished: Callable[[Stage, Finished], None], stored: Callable[[Stage, StageRecord], None] | None = None,
                 failed: Callable[[Stage, BaseException], None] | None = None,
                 check_stop: Callable[[], None] | None = None, warn: Callable[[str], None] | None = None):
        self.config = config
        self.pm = pm
        self.parts = list(parts)
        self.output_dir = Path(output_dir)
        self.resume = resume
        self._is_done = is_done
        self._inputs = inputs
        self._claim = claim or (lambda stage: CLAIMED)
        self._release = release or (lambda stage: None)
        self._finished = finished
        self._stored = stored
        self._failed = failed
        self._check_stop = check_stop
        self._warn = warn or (lambda message: None)
        #: failed stages, and the stages not run because one of their inputs is in here
        self.broken: set[str] = set()
        self.n_failed = 0

    # ------------------------------------------------------------------------- the policy

    @property
    def fail_fast(self) -> bool:
        """``run.fail_fast``: once a stage failed, start no other (else every stage that does not need it runs)."""
        return bool(self.config.run.fail_fast)

    def check_stop(self) -> None:
        """Raise :class:`StopRequested` (a ``BaseException``) once the run was asked to stop (Ctrl-C, SIGTERM):
        check it before starting a stage; stages already running finish and are reported first."""
        if self._check_stop is not None:
            self._check_stop()

    def halted(self) -> bool:
        """Whether to start no new stage: :attr:`fail_fast` and a stage failed (the stop is :meth:`check_stop`)."""
        return self.fail_fast and self.n_failed > 0

    def blocked(self, stage: Stage) -> bool:
        """Whether an input of ``stage`` failed or was not run: then ``stage`` cannot run in this run either (it is
        marked so, and counts as skipped)."""
        if any(d in self.broken for d in stage.deps):
            self.broken.add(stage.id)
            return True
        return False

    def is_done(self, stage_id: str) -> bool:
        """Whether the stage ``stage_id`` has finished in this run (computed, or served from the store)."""
        return self._is_done(stage_id)

    def ready(self, stage: Stage) -> bool:
        """Whether every input of ``stage`` has finished."""
        return all(self._is_done(d) for d in stage.deps)

    # ------------------------------------------------------------------------- computing

    def inputs(self, stage: Stage) -> list:
        """The finished inputs of ``stage`` as its op expects them: ``(StageRecord, arrays)`` per dependency."""
        return self._inputs(stage)

    def compute(self, part: Part, stage: Stage) -> Finished:
        """Compute ``stage`` in this thread with ``part.context`` and its finished inputs: ``(record, arrays)``.
        Raises what the stage's op raises. Report the result with :meth:`finished`."""
        return execute(part.context, stage, self.inputs(stage))

    def claim(self, stage: Stage) -> str:
        """Take ``stage``'s lock in the stage store before computing it: ``"claimed"`` (compute it; the lock is
        released when it is reported), ``"busy"`` (another run computes it: try again later) or ``"done"``
        (another run stored it meanwhile: it has been reported as cached, do not compute it)."""
        return self._claim(stage)

    def release(self, stage: Stage) -> None:
        """Release ``stage``'s lock without reporting it (it was claimed and is not computed after all)."""
        self._release(stage)

    @property
    def context_factory(self) -> ContextFactory:
        """A picklable ``factory(config) -> run context`` for a worker process that cannot share ``part.context``
        (a cluster node): a fresh plugin manager with this run's plugins, for the run's output directory."""
        return ContextFactory(str(self.output_dir), in_process_plugins(self.pm))

    # ------------------------------------------------------------------------- reporting (in this process)

    def finished(self, stage: Stage, result: Finished) -> None:
        """Report a stage computed here (or whose arrays came back here): store ``result`` (record, arrays) in the
        stage store, release its lock, report it. Raises a run-level error (the disk is full)."""
        self._finished(stage, result)

    def stored(self, stage: Stage, record: StageRecord) -> None:
        """Report a stage that another process computed and stored itself (its arrays are read from the store)."""
        if self._stored is None:  # pragma: no cover - the runner always passes it
            raise RuntimeError("this execution cannot report stages stored elsewhere")
        self._stored(stage, record)

    def failed(self, stage: Stage, error: BaseException) -> None:
        """Report that ``stage``'s op raised ``error``: its lock is released, the failure is printed and listed in
        ``results.json``, and the stages that need it are :meth:`blocked`. The run goes on (unless
        :attr:`fail_fast`) and ends ``partial``."""
        self.release(stage)
        self.broken.add(stage.id)
        self.n_failed += 1
        if self._failed is not None:
            self._failed(stage, error)

    def skip(self, stage: Stage) -> None:
        """Mark ``stage`` as not run (an input failed, or the run stopped before it started)."""
        self.broken.add(stage.id)

    def warn(self, message: str) -> None:
        """Print a one-line ``warning: ...`` (a corrupt stored stage being recomputed, ...)."""
        self._warn(message)

    # ------------------------------------------------------------------------- the shared scheduler

    def schedule(self, part: Part, *, pool: Callable[[int], cf.Executor] | None = None, slots: int = 1,
                 pooled: Callable[[Stage], bool] | None = None,
                 task: Callable[[Stage, list], Finished] | None = None) -> None:
        """Compute ``part.stages`` in dependency order and report each one as it finishes: the scheduling loop of
        the built-in local executor, for any ``concurrent.futures`` pool.

        With ``pool``, up to ``slots`` stages for which ``pooled(stage)`` holds (default: all) run at once as
        ``pool(n).submit(task, stage, inputs)``; the pool is started once, after the models those stages train
        on cached features have embedded their inputs here. ``task`` defaults to computing the stage with
        ``part.context`` (right for threads; a process pool passes a function its workers can run). Without
        ``pool`` (or with fewer than two pooled stages) everything runs in this thread. A ``train`` stage that
        is not pooled waits until no pooled stage runs (it may use every core). Locks, the failure policy and the
        stop flag are applied as documented on :class:`Executor`.
        """
        run_stages(part.context, part.stages, self, pool=pool, slots=slots, pooled=pooled, task=task)


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
    """Whether ``stage`` may run in a worker process: a linear probe trained on cached features on the CPU."""
    if stage.op != "train" or ctx.device.type != "cpu":
        return False
    return is_feature_model(ctx.model(stage.spec["model"]))


def _on_features(ctx: RunContext, stage: Stage) -> bool:
    return stage.op == "train" and is_feature_model(ctx.model(stage.spec["model"]))


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
    """Embed every model the pooled stages need, and do the optimiser's lazy imports, before they start."""
    from .._engine import training

    seen = set()
    for stage in stages:
        if not _on_features(ctx, stage):
            continue
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


class LocalExecutor:
    """The default executor (``local``): stages run on this machine, in plan order, with CPU linear-head stages
    spread over ``run.workers`` forked worker processes (``--workers 1``: everything in this process)."""

    def run(self, execution: Execution) -> None:
        """Run every part of ``execution`` with :meth:`Execution.schedule` and a pool of forked processes.

        :param execution: the run's pending stages.
        """
        workers = resolve_workers(execution.config.run.workers)
        forks = workers > 1 and "fork" in multiprocessing.get_all_start_methods()
        for part in execution.parts:  # one dataset after the other, into one store
            ctx = part.context
            execution.schedule(part, pool=(lambda n, ctx=ctx: _start_pool(ctx, n)) if forks else None,
                               slots=workers, pooled=lambda stage, ctx=ctx: poolable(ctx, stage), task=_run_in_worker)


def run_stages(
    ctx: RunContext,
    pending: Sequence[Stage],
    ex: Execution,
    *,
    pool: Callable[[int], cf.Executor] | None = None,
    slots: int = 1,
    pooled: Callable[[Stage], bool] | None = None,
    task: Callable[[Stage, list], Finished] | None = None,
) -> None:
    """Run ``pending`` (topologically ordered) and report each stage to ``ex`` in this process as it finishes
    (:meth:`Execution.schedule` documents the arguments).

    A failed stage does not stop the run: the stages that depend on it are skipped and every other stage runs
    (unless ``run.fail_fast``). Raises a run-level error (a worker died, storing failed: the disk is full...) or
    the stop, always after every stage already running has finished and been reported (their results are kept).
    """
    from .interrupts import StopRequested

    if ex.halted():  # fail-fast after a failure in an earlier part
        return
    pooled = pooled or (lambda stage: True)
    task = task or (lambda stage, upstream: execute(ctx, stage, upstream))
    pooled_ids = {s.id for s in pending if pool is not None and slots > 1 and pooled(s)}
    if len(pooled_ids) < 2:
        pooled_ids = set()
    executor = None
    n_slots = min(slots, len(pooled_ids))
    todo = list(pending)
    running: dict[cf.Future, Stage] = {}
    error: BaseException | None = None
    stop: StopRequested | None = None

    def halted() -> bool:
        nonlocal stop
        if stop is None and error is None:
            try:
                ex.check_stop()
            except StopRequested as exc:
                stop = exc
        return stop is not None or error is not None or ex.halted()

    def report(stage: Stage, result: Finished) -> None:
        nonlocal error
        try:
            ex.finished(stage, result)
        except Exception as exc:  # noqa: BLE001 - storing failed (disk full): the run's error, raised below
            ex.release(stage)
            error = error or exc

    try:
        if pooled_ids:
            _prepare_parent(ctx, [s for s in pending if s.id in pooled_ids])
            executor = pool(n_slots)
        while True:
            progressed = False
            for stage in list(todo):
                if halted():
                    break
                if ex.blocked(stage):  # an input failed: it cannot run in this run
                    todo.remove(stage)
                    progressed = True
                    continue
                if not ex.ready(stage):
                    continue
                is_pooled = stage.id in pooled_ids
                if is_pooled and len(running) >= n_slots:
                    continue
                if not is_pooled and stage.op == "train" and running:
                    continue  # a fine-tuning stage waits for an idle machine
                state = ex.claim(stage)
                if state == BUSY:
                    continue
                todo.remove(stage)
                progressed = True
                if state == DONE:
                    continue
                if is_pooled:
                    try:
                        running[executor.submit(task, stage, ex.inputs(stage))] = stage
                    except BrokenProcessPool:  # a worker died; its stage's future reports it too
                        ex.release(stage)
                        error = error or _worker_died(list(running.values()) or [stage])
                    continue
                try:
                    result = execute(ctx, stage, ex.inputs(stage))
                except Exception as exc:  # noqa: BLE001 - reported; the other stages go on
                    ex.failed(stage, exc)
                    continue
                report(stage, result)
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
                    ex.release(stage)
                    error = error or _worker_died([stage, *running.values()])
                    continue
                except Exception as exc:  # noqa: BLE001 - the stage's own error, raised in the worker
                    ex.failed(stage, exc)
                    continue
                report(stage, result)
    except BaseException:
        for stage in running.values():
            ex.release(stage)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        raise
    if executor is not None:
        executor.shutdown(wait=True)
    if error is not None:
        raise error
    if stop is not None:
        raise stop
    if todo and not ex.halted():  # pragma: no cover - the plan is a DAG in topological order
        raise RuntimeError(f"stages never became ready: {[s.name for s in todo]}")


def check_executor(config, pm) -> None:
    """A one-line error (with did-you-mean) unless ``run.executor`` names a registered executor."""
    from .._contracts.errors import ConfigError, UnknownComponentError

    try:
        pm.registry("executor").resolve(config.run.executor)
    except UnknownComponentError as exc:
        raise ConfigError(f"run.executor (--executor): {exc}") from None


def create_executor(config, pm) -> Executor:
    """The executor ``run.executor`` names, created by its registered factory (checked against the protocol)."""
    from .._contracts.errors import PluginError

    check_executor(config, pm)
    executor = pm.create("executor", config.run.executor)
    if not callable(getattr(executor, "run", None)):
        raise PluginError(f"executor {config.run.executor!r}'s factory returned {type(executor).__name__}, which has "
                          f"no run(execution) method (see the Executor protocol)")
    return executor


__all__ = ["BUSY", "CLAIMED", "DONE", "Execution", "Executor", "LocalExecutor", "available_cores", "poolable",
           "resolve_workers", "run_stages"]
