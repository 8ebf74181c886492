"""The Ray executor (``run.executor = "ray"``): every stage of the plan is a Ray Core task on a cluster.

Each pending stage is submitted once, up front, with the resources it needs (:func:`stage_resources`) and the
``ObjectRef`` of each pending upstream stage as an argument, so Ray starts it when its inputs are done, on any
node with room. What travels through Ray's object store is small: the run's config, the stage (its spec) and each
stage's :class:`Outcome` (its record: metrics, seconds). Arrays (features, labels, predictions) stay in the
content-addressed stage store, which every node must see at the same path (a shared filesystem): a task reads its
inputs from there and writes its result there, under the same per-stage lock and atomic write as a local run. So
a stage finished by anyone, this run, an earlier one, or a concurrent one, is never computed again, and the store
outlives the driver: a driver killed mid-run loses only the stages that were running, and the same command from
any node (or from a laptop that mounts the store) resumes.

A stage whose op raises returns a ``failed`` outcome (its error travels back when it pickles, else its type and
message); the stages that need it are skipped, every other stage runs (unless ``run.fail_fast``), and the runner
ends the run ``partial`` with the failures listed, exactly as the local executor does. Stopping (Ctrl-C, SIGTERM,
``fail_fast``) is a marker file in the store: tasks that have not started see it and return ``cancelled``,
tasks that run finish their stage, as a local run finishes its current stage.
"""

from __future__ import annotations

import pickle
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._config.config import memory_bytes
from .._contracts.errors import ConfigError, ResourceError, last_line
from .._engine.stage import StageRecord
from .._plan.planner import Stage
from .store import CorruptStage, StageStore

#: The install command the one-line error names when Ray is missing.
INSTALL = "pip install 'w2s-harness[ray]'"
#: Seconds to wait for a TCP connection to ``--ray-address`` before calling it unreachable.
CONNECT_TIMEOUT = 3.0
#: Seconds between looks at finished tasks, the stop flag, and (in a task) a lock another run holds.
POLL_SECONDS = 0.2
#: Resources per stage class when neither the model nor ``run.resources`` says otherwise. A linear head on cached
#: features is a few thousand small steps: a quarter of a GPU is plenty and four share one. Fine-tuning takes a
#: whole GPU. The cheap ops (label, combine, filter) take a CPU and no GPU.
DEFAULT_RESOURCES: dict[str, dict[str, float]] = {
    "head": {"num_cpus": 1, "num_gpus": 0.25},
    "finetune": {"num_cpus": 1, "num_gpus": 1},
    "op": {"num_cpus": 1, "num_gpus": 0},
}


class RemoteStageError(Exception):
    """A stage's error raised on a Ray worker that could not travel back as itself (it does not pickle)."""


def import_ray():
    """The ``ray`` module, or a one-line :class:`ConfigError` with the install command."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"run.executor = 'ray' (--executor ray) needs Ray, which is not installed: "
                          f"{INSTALL}") from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``ray://host:port`` or ``host:port``; ``None`` for ``auto`` / ``local``."""
    if address in ("auto", "local"):
        return None
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--ray-address {address!r} is not auto, local, ray://host:port or host:port")
    return host.strip("[]"), int(port)


def connect(address: str) -> bool:
    """Connect this process to the Ray cluster at ``address`` (``local``: start one on this machine).

    :returns: whether this call started the connection (and the caller should shut it down); ``False`` when the
        process was connected already (a notebook, a test's fixture), whose connection is then used as it is.
    :raises ResourceError: one line naming the address when no cluster answers there (a TCP probe with a
        :data:`CONNECT_TIMEOUT` first, so an unreachable host fails in seconds, not after Ray's long retries).
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    target = _host_port(address)
    fix = "start one with `ray start --head` (see docs: Scaling out) or pass another --ray-address"
    if target is not None:
        try:
            socket.create_connection(target, timeout=CONNECT_TIMEOUT).close()
        except OSError as exc:
            raise ResourceError(f"no Ray cluster reachable at --ray-address {address!r} "
                                f"({exc.strerror or type(exc).__name__}); {fix}") from None
    kwargs: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": False}
    try:
        if address == "local":
            ray.init(include_dashboard=False, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ... : all one line here
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise ResourceError(f"no Ray cluster reachable at --ray-address {address!r} "
                            f"({lines[0] if lines else type(exc).__name__}); {fix}") from None
    return True


def stage_class(ctx, stage: Stage) -> str:
    """``head`` (a linear probe on cached features), ``finetune`` (a model trained end to end) or ``op``."""
    from .._contracts.components import is_feature_model

    if stage.op != "train":
        return "op"
    return "head" if is_feature_model(ctx.model(stage.spec["model"])) else "finetune"


def stage_resources(ctx, stage: Stage, overrides: dict, gpus: bool) -> dict[str, Any]:
    """The Ray resources of ``stage``: :data:`DEFAULT_RESOURCES` for its class, then what its op declares
    (:meth:`StageOp.resources`, read through :func:`~w2s_harness._engine.ops.op_resources`: nothing for the built-in
    ops, a plugin op's own request), then what its model declares (a train stage's model: an optional
    ``resources()`` method), each any of ``num_cpus`` / ``num_gpus`` / ``memory``, then
    ``run.resources.<class>``. Without ``gpus`` (``run.device = "cpu"``) no stage asks for a GPU."""
    from .._engine.ops import op_resources

    cls = stage_class(ctx, stage)
    res: dict[str, Any] = dict(DEFAULT_RESOURCES[cls])
    res.update(op_resources(ctx, stage))
    if stage.op == "train":
        declared = getattr(ctx.model(stage.spec["model"]), "resources", None)
        if callable(declared):
            res.update({k: v for k, v in (declared() or {}).items() if k in ("num_cpus", "num_gpus", "memory")})
    res.update(overrides.get(cls, {}))
    if not gpus:
        res["num_gpus"] = 0
    if "memory" in res:
        res["memory"] = memory_bytes(res["memory"], f"run.resources.{cls}.memory")
    return res


def check_fits(requests: dict[str, dict[str, Any]], address: str) -> None:
    """A one-line error when a stage asks for more than any node of the cluster has (Ray would wait forever)."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    keys = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}
    for name, res in requests.items():
        for key, value in res.items():
            if value and not any(node.get(keys[key], 0) >= value for node in nodes):
                most = max((node.get(keys[key], 0) for node in nodes), default=0)
                raise ConfigError(f"stage {name!r} needs {key}={value} but no node of the Ray cluster at "
                                  f"{address!r} has that much (largest: {most:g}); lower run.resources or "
                                  f"add such a node (run.device = 'cpu' asks for no GPU)")


# ------------------------------------------------------------------------------------------- the task side


@dataclass
class Job:
    """What every task of one dataset of a run needs besides its stage: put in the object store once."""

    token: str
    key: str
    config: Any
    output_dir: str
    plugins: list = field(default_factory=list)
    resume: bool = True


@dataclass
class Outcome:
    """What a task returns: ``done`` (``record``), ``failed`` (the stage's op raised), ``skipped`` (an input did
    not finish), ``cancelled`` (the run was stopping before it started) or ``fatal`` (the store could not be
    written: a run-level error)."""

    state: str
    record: StageRecord | None = None
    error: BaseException | None = None
    error_type: str = ""
    error_text: str = ""
    warning: str | None = None

    def exception(self) -> BaseException:
        return self.error if self.error is not None else RemoteStageError(f"{self.error_type}: {self.error_text}")


#: The run contexts a Ray worker process holds (one at a time): a task reuses the components, data, splits and
#: features the task before it in the same process loaded.
_CONTEXTS: dict[str, Any] = {}


def _context(job: Job):
    from .local import ContextFactory

    ctx = _CONTEXTS.get(job.key)
    if ctx is None:
        _CONTEXTS.clear()
        ctx = ContextFactory(job.output_dir, job.plugins)(job.config)
        _CONTEXTS[job.key] = ctx
    return ctx


def _cancel_marker(store: StageStore, token: str) -> Path:
    return store.root / ".cancel" / token


def _failure(exc: BaseException, state: str = "failed") -> Outcome:
    try:
        error = pickle.loads(pickle.dumps(exc))  # our own bytes: checks that the error travels back
    except Exception:  # noqa: BLE001 - it does not: its type and message do
        error = None
    return Outcome(state, error=error, error_type=type(exc).__name__, error_text=str(exc))


def run_stage(job: Job, stage: Stage, threads: int, *upstream: Outcome) -> Outcome:
    """The task: claim the stage's lock in the shared store, serve it from there if someone stored it, else
    compute it from its stored inputs and store it. ``upstream`` are the outcomes of the inputs this run computes
    (Ray passes them once they are done); the arrays are read from the store."""
    from filelock import Timeout

    from .._engine.ops import execute
    from .._engine.torch_settings import torch_settings

    if any(u.state != "done" for u in upstream):
        return Outcome("skipped")
    store = StageStore(Path(job.output_dir))
    cancel = _cancel_marker(store, job.token)
    lock = store.lock(stage.id)
    while True:  # another run may compute this stage: wait for it (and read its result) unless we stop
        if cancel.exists():
            return Outcome("cancelled")
        try:
            lock.acquire(timeout=POLL_SECONDS)
            break
        except Timeout:
            continue
    try:
        warning = None
        if job.resume and store.has(stage.id):
            try:
                record, _ = store.load(stage.id)
                record.cached = True
                return Outcome("done", record)
            except CorruptStage as exc:
                warning = f"stage {stage.name!r} ({stage.id}) in {store.root} is corrupt ({exc}); recomputing it"
                store.remove(stage.id)
        if cancel.exists():
            return Outcome("cancelled")
        try:
            import torch

            ctx = _context(job)
            ctx._device = torch.device("cuda" if ray_gpu_ids() and job.config.run.device != "cpu" else "cpu")
            inputs = [store.load(d) for d in stage.deps]
            with torch_settings(threads):
                record, arrays = execute(ctx, stage, inputs)
        except Exception as exc:  # noqa: BLE001 - the stage's own failure: reported, the run goes on
            out = _failure(exc)
            out.warning = warning
            return out
        try:
            store.save(record, arrays, identity=stage.identity)
        except OSError as exc:
            return _failure(exc, "fatal")
        return Outcome("done", record, warning=warning)
    finally:
        lock.release()


def ray_gpu_ids() -> list:
    """The GPUs Ray gave the running task (it sets ``CUDA_VISIBLE_DEVICES`` to them)."""
    import ray

    return ray.get_gpu_ids()


# ------------------------------------------------------------------------------------------- the driver side


def in_process_plugins(pm) -> list:
    """The plugins passed to this process in-process (``main(argv, plugins=[...])``): a Ray worker registers
    them too (modules and objects travel by reference: the workers must be able to import them). Built-ins and
    installed entry points load on the worker by themselves."""
    from .local import in_process_plugins as plugins

    return plugins(pm)


class RayExecutor:
    """The ``ray`` executor: every pending stage is a Ray Core task on the cluster at ``run.ray_address``, with
    the resources :func:`stage_resources` derives (``run.resources`` overrides), reading its inputs from and
    writing its result to the shared stage store. Needs ``pip install 'w2s-harness[ray]'``."""

    def run(self, execution) -> None:
        """Submit every pending stage of ``execution`` as a Ray task and report each one as it is stored.

        :param execution: the run's pending stages (an :class:`~w2s_harness.Execution`).
        """
        run_stages_ray(execution)


def run_stages_ray(execution) -> None:
    """Run every part of ``execution`` (one per dataset) as Ray tasks; report each stage as it is stored (computed,
    or found stored by a task) or fails.

    :raises: a run-level error (a stage could not be stored), or the stop, after every task already running has
        finished and been reported.
    """
    from .interrupts import StopRequested

    ray = import_ray()
    jobs = [(part.context, part.stages) for part in execution.parts]
    if not any(pending for _, pending in jobs):  # everything is stored: no cluster needed
        return
    started = connect(execution.config.run.ray_address)
    try:
        _drive(ray, execution, jobs, StageStore(execution.output_dir), stop_type=StopRequested)
    finally:
        if started:
            ray.shutdown()


def _drive(ray, execution, jobs, store, *, stop_type) -> None:
    config, on_stored, on_failure, warn = execution.config, execution.stored, execution.failed, execution.warn
    gpus = config.run.device != "cpu" and ray.cluster_resources().get("GPU", 0) > 0
    if config.run.device.startswith("cuda") and not gpus:
        raise ConfigError(f"run.device={config.run.device!r} but the Ray cluster at {config.run.ray_address!r} "
                          f"has no GPU; use --device cpu or add GPU nodes")
    token = uuid.uuid4().hex
    task = ray.remote(run_stage)
    plugins = execution.context_factory.plugins
    planned = []
    for i, (ctx, pending) in enumerate(jobs):
        for stage in pending:
            planned.append((i, ctx, stage, stage_resources(ctx, stage, config.run.resources, gpus)))
    check_fits({stage.name: res for _, _, stage, res in planned}, config.run.ray_address)

    refs: dict[str, Any] = {}
    stage_of: dict[Any, Stage] = {}
    job_refs = {i: ray.put(Job(token, f"{token}/{i}", ctx.config, str(store.root.parent), plugins, execution.resume))
                for i, (ctx, _) in enumerate(jobs)}
    for i, _ctx, stage, res in planned:
        threads = config.run.threads or max(1, int(res.get("num_cpus") or 1))
        deps = [refs[d] for d in stage.deps if d in refs]
        ref = task.options(name=f"w2s:{stage.name}", **res).remote(job_refs[i], stage, threads, *deps)
        refs[stage.id] = ref
        stage_of[ref] = stage

    waiting = set(stage_of)
    broken: set[str] = set()
    stop: BaseException | None = None
    fatal: BaseException | None = None
    marker = _cancel_marker(store, token)

    def stopping() -> None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()

    try:
        while waiting:
            if stop is None:
                try:
                    execution.check_stop()
                except stop_type as exc:
                    stop = exc
                    stopping()
            ready, _ = ray.wait(list(waiting), num_returns=1, timeout=POLL_SECONDS)
            if ready:
                ready, _ = ray.wait(list(waiting), num_returns=len(waiting), timeout=0)
            for ref in ready:
                waiting.discard(ref)
                stage = stage_of[ref]
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the task itself died (its worker or node was lost)
                    if any(d in broken for d in stage.deps) or _input_lost(ray, stage, refs):
                        broken.add(stage.id)
                        execution.skip(stage)
                        continue
                    out = _failure(RemoteStageError(last_line(exc)))
                if out.warning:
                    warn(out.warning)
                if out.state == "done":
                    on_stored(stage, out.record)
                elif out.state == "failed":
                    broken.add(stage.id)
                    on_failure(stage, out.exception())
                    if config.run.fail_fast and stop is None:
                        stop = True
                        stopping()
                elif out.state == "fatal":
                    broken.add(stage.id)
                    execution.skip(stage)
                    fatal = fatal or out.exception()
                    stopping()
                else:  # skipped or cancelled
                    broken.add(stage.id)
                    execution.skip(stage)
    except BaseException:
        for ref in waiting:  # a second Ctrl-C, or an error here: stop now; finished stages are stored
            ray.cancel(ref, force=True)
        raise
    finally:
        marker.unlink(missing_ok=True)
    if fatal is not None:
        raise fatal
    if isinstance(stop, BaseException):
        raise stop


def _input_lost(ray, stage: Stage, refs: dict) -> bool:
    """Whether an input of ``stage`` that this run computes failed at the Ray level (its error reached
    ``stage`` as an argument): then ``stage`` did not fail, it was never run."""
    for d in stage.deps:
        if d in refs:
            try:
                ray.get(refs[d], timeout=0)
            except Exception:  # noqa: BLE001 - any error getting it means the input is missing
                return True
    return False


__all__ = ["DEFAULT_RESOURCES", "INSTALL", "RayExecutor", "connect", "run_stages_ray", "stage_resources"]
