"""The runner: orchestration only. It plans (:mod:`w2s_harness._plan.planner`), serves finished stages from the store, executes the
rest (:mod:`w2s_harness._execution.local`), and assembles the typed :class:`~w2s_harness.Results` (:mod:`w2s_harness._results.results`)."""

from __future__ import annotations

import errno
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .. import __version__
from .._contracts.errors import ResourceError, W2SError, last_line
from .._engine.ops import RunContext
from .._engine.stage import StageRecord
from .._engine.torch_settings import torch_settings
from .._plan.planner import make_plan
from .._results.assemble import assemble_all
from .._results.results import Results
from .interrupts import StopFlag, StopRequested
from .local import BUSY, CLAIMED, DONE, Execution, Part, create_executor
from .store import CorruptStage, StageStore, atomic_write_text


def environment(device: str) -> dict[str, Any]:
    import importlib.metadata as md
    import subprocess

    env = {"w2s_harness": __version__, "python": platform.python_version(), "platform": platform.platform(),
           "device": device}
    for pkg in ("torch", "transformers", "triton", "datasets", "numpy"):
        try:
            env[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            env[pkg] = None
    try:
        env["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], check=False, capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = None
    return env


def check_writable(output_dir: Path) -> None:
    """A one-line :class:`ResourceError` unless ``output_dir`` can be created and written, checked before anything
    runs (instead of failing after the first stage trained)."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output_dir):
            pass
    except OSError as exc:
        raise ResourceError(f"cannot write to the output directory {str(output_dir)!r} ({exc.strerror or exc}); "
                            f"choose a writable one with --output-dir (run.output_dir)") from None


def disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class StagesFailed(W2SError):
    """Several stages failed (each is listed in ``results.json`` ``failures``); the others finished and are kept."""


def stages_failed(failures: list[dict], skipped: int) -> StagesFailed:
    names = "; ".join(f"{f['name']!r} ({f['id']}): {f['error']}" for f in failures[:3])
    more = f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
    after = f", {skipped} other stages did not run" if skipped else ""
    return StagesFailed(f"{len(failures)} stages failed ({names}{more}){after}; finished stages are kept "
                        f"(results.json lists the failures): fix the cause and run the same command to compute only "
                        f"what is missing")


def run(config, pm, *, resume: bool = True, progress=None, on_stage=None, stop: StopFlag | None = None,
        warn=None, on_failure=None, on_start=None) -> Results:
    """Execute ``config``; always writes ``results.json`` (complete, partial or failed) before returning/raising.

    :param progress: ``progress(description, total, unit="rows") -> advance(n)`` for long inner loops (an
        encoder pass; an op's :meth:`OpContext.progress <w2s_harness.OpContext.progress>`: LM steps, searches).
    :param on_stage: ``on_stage(stage, record, done, total)`` after every stage (the CLI's progress bar).
    :param on_start: ``on_start(stage)`` when this run begins computing a stage (not for cache hits).
    :param stop: a :class:`StopFlag`: once set (by a signal handler), the run stops after its current unit of work
        (a stage, or a chunk of an encoder pass), writes a partial ``results.json`` and raises
        :class:`StopRequested`.
    :param warn: ``warn(message)`` for one-line notices (a corrupt stored stage being recomputed); default stderr.
    :param on_failure: ``on_failure(stage, message)`` as soon as a stage fails (``message``: the error's type and
        last line); default a ``failed:`` line on stderr. The other stages go on unless ``run.fail_fast``; the run
        then ends ``partial`` with the failures in ``results.json`` and raises the error (one failure) or
        :class:`StagesFailed` (several).
    """
    t0 = time.perf_counter()
    output_dir = Path(config.run.output_dir)
    executor = create_executor(config, pm)  # an unknown run.executor is a one-line error before anything is planned
    parts = [(sub, make_plan(sub, pm)) for sub in config.per_dataset()]  # every dataset planned before any runs
    n_stages = sum(len(plan.stages) for _, plan in parts)
    check_writable(output_dir)
    store = StageStore(output_dir)
    contexts = [RunContext(pm=pm, config=sub, output_dir=output_dir, progress=progress,
                           check_stop=stop.check if stop is not None else None, _dataset=plan.dataset)
                for sub, plan in parts]
    warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr))
    on_failure = on_failure or (lambda stage, message: print(f"failed: stage {stage.name!r} ({stage.id}): {message}",
                                                             file=sys.stderr))
    failures: list[dict] = []
    errors: list[BaseException] = []
    records: dict[str, StageRecord] = {}
    arrays: dict[str, dict] = {}
    held: dict[str, Any] = {}  # stage id -> the FileLock this run holds while computing it
    status, error = "complete", None
    done = 0

    def finish(stage, record: StageRecord, arr) -> None:
        nonlocal done
        records[stage.id], arrays[stage.id] = record, arr
        done += 1
        pm.hook.w2s_stage_end(stage=stage, result=record)
        if on_stage is not None:
            on_stage(stage, record, done, n_stages)

    def load_stored(stage) -> bool:
        """Serve ``stage`` from the store; a corrupt stored stage is reported, removed and recomputed."""
        try:
            record, arr = store.load(stage.id)
        except CorruptStage as exc:
            warn(f"stage {stage.name!r} ({stage.id}) in {store.root} is corrupt ({exc}); recomputing it")
            store.remove(stage.id)
            return False
        record.cached = True
        finish(stage, record, arr)
        return True

    def claim(stage) -> str:
        from filelock import Timeout

        lock = store.lock(stage.id)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return BUSY  # another run computes it: do other work, look again later
        if resume and store.has(stage.id) and load_stored(stage):  # it finished it while we waited
            lock.release()
            return DONE
        held[stage.id] = lock
        if on_start is not None:
            on_start(stage)
        return CLAIMED

    def release(stage) -> None:
        lock = held.pop(stage.id, None)
        if lock is not None:
            lock.release()

    def failed(stage, exc: BaseException) -> None:
        message = last_line(exc)
        failures.append({"id": stage.id, "name": stage.name, "seed": stage.seed, "error": message})
        errors.append(exc)
        on_failure(stage, message)

    def on_stored(stage, record: StageRecord) -> None:
        """A stage another process (a Ray task) computed or found and stored: its arrays come from the store."""
        _, arr = store.load(stage.id)
        finish(stage, record, arr)

    def on_result(stage, result) -> None:
        record, arr = result
        try:
            store.save(record, arr, identity=stage.identity)
        except OSError as exc:
            if disk_full(exc):
                raise ResourceError(f"disk full while storing stage {stage.name!r} in {store.root}; free space or "
                                    f"choose another --output-dir (finished stages are kept)") from None
            raise
        finally:
            release(stage)
        finish(stage, record, arr)

    with torch_settings(config.run.threads):
        pm.hook.w2s_run_start(config=config)
        try:
            work = [Part(sub, ctx, [st for st in plan.stages if not (resume and store.has(st.id) and load_stored(st))])
                    for (sub, plan), ctx in zip(parts, contexts)]
            execution = Execution(config, pm, work, output_dir, resume=resume, is_done=records.__contains__,
                                  inputs=lambda st: [(records[d], arrays[d]) for d in st.deps], claim=claim,
                                  release=release, finished=on_result, stored=on_stored, failed=failed,
                                  check_stop=stop.check if stop is not None else None, warn=warn)
            executor.run(execution)
            if failures:
                skipped = sum(len(part.stages) for part in work) - sum(
                    st.id in records for part in work for st in part.stages) - len(failures)
                raise errors[0] if len(errors) == 1 else stages_failed(failures, skipped)
        except BaseException as exc:  # noqa: BLE001 - keep what finished: results.json is written either way
            stopped = isinstance(exc, (StopRequested, KeyboardInterrupt))
            status, error = ("partial" if records or stopped else "failed"), exc
            if disk_full(exc):
                error = ResourceError(f"disk full while running ({exc.strerror}: {exc.filename}); free space or "
                                      f"choose another --output-dir (finished stages are kept)")
        finally:
            for lock in held.values():
                lock.release()
            held.clear()
    finished = records.values()
    timings = {"total_seconds": time.perf_counter() - t0,
               "computed_seconds": sum(r.seconds or 0.0 for r in finished if not r.cached),
               "stages_computed": sum(not r.cached for r in finished),
               "stages_cached": sum(bool(r.cached) for r in finished)}
    used = [c._device for c in contexts if c._device is not None]
    device_name = str(used[0]) if used else config.run.device
    results = assemble_all(config, parts, records, status, environment(device_name), timings, arrays=arrays)
    results.failures = failures
    if error is not None:
        results.error = describe_stop(error) if isinstance(error, (StopRequested, KeyboardInterrupt)) \
            else f"{type(error).__name__}: {error}"
    try:
        atomic_write_text(output_dir / "results.json", results.to_json())
    except OSError as exc:
        if not disk_full(exc):
            raise
        error = ResourceError(f"disk full: could not write {output_dir / 'results.json'} "
                              f"({len(records)} finished stages are kept in {store.root}); free space and run "
                              f"the same command again to rebuild it from the stored stages")
    pm.hook.w2s_run_end(results=results)
    if error is not None:
        raise error
    return results


def describe_stop(exc: BaseException) -> str:
    if isinstance(exc, StopRequested) and exc.signum:
        return f"stopped by {signal.Signals(exc.signum).name} after the current unit of work"
    return "interrupted (KeyboardInterrupt)"
