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
from collections.abc import Callable, Sequence

from ._components import is_feature_model
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
    import torch

    torch.set_num_threads(1)
    ctx.progress = None  # the parent owns the terminal
    _WORKER_CTX = ctx


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


def run_stages(
    ctx: RunContext,
    pending: Sequence[Stage],
    upstream: Callable[[Stage], list],
    is_done: Callable[[str], bool],
    on_result: Callable[[Stage, Finished], None],
    *,
    workers: int,
) -> None:
    """Run ``pending`` (topologically ordered) and call ``on_result`` in this process as each one finishes.

    :param upstream: the finished dependencies of a stage, as the op expects them.
    :param is_done: whether a stage id has finished (cached or run).
    :param workers: worker processes for pooled stages (1 = everything in this process, in plan order).
    :raises: the first stage error, after every stage already running has finished and been reported (their
        results are kept).
    """
    pooled = [s for s in pending if workers > 1 and poolable(ctx, s)]
    if len(pooled) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        for stage in pending:
            on_result(stage, execute(ctx, stage, upstream(stage)))
        return

    _prepare_parent(ctx, pooled)
    pooled_ids = {s.id for s in pooled}
    todo = list(pending)
    running: dict[cf.Future, Stage] = {}
    error: BaseException | None = None
    pool = cf.ProcessPoolExecutor(
        max_workers=min(workers, len(pooled)),
        mp_context=multiprocessing.get_context("fork"),
        initializer=_init_worker,
        initargs=(ctx,),
    )
    try:
        while (todo and error is None) or running:
            progressed = False
            for stage in list(todo) if error is None else []:
                if not all(is_done(d) for d in stage.deps):
                    continue
                if stage.id in pooled_ids:
                    running[pool.submit(_run_in_worker, stage, upstream(stage))] = stage
                elif stage.op == "train" and running:
                    continue  # a fine-tuning stage waits for an idle machine
                else:
                    try:
                        on_result(stage, execute(ctx, stage, upstream(stage)))
                    except Exception as exc:  # noqa: BLE001 - finish what runs, then raise it
                        error = exc
                todo.remove(stage)
                progressed = True
                if error is not None:
                    break
            if progressed and error is None:
                continue
            if not running:
                break
            done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for future in done:
                stage = running.pop(future)
                try:
                    on_result(stage, future.result())
                except Exception as exc:  # noqa: BLE001 - the first error is raised below
                    error = error or exc
    except BaseException:
        for future in running:
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    if error is not None:
        raise error
    if todo:  # pragma: no cover - the plan is a DAG in topological order
        raise RuntimeError(f"stages never became ready: {[s.name for s in todo]}")


__all__ = ["available_cores", "poolable", "resolve_workers", "run_stages"]
