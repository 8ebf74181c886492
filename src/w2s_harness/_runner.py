"""The runner: orchestration only. It plans (:mod:`._plan`), serves finished stages from the store, executes the
rest (:mod:`._executor`), and assembles the typed :class:`~w2s_harness.Results` (:mod:`._results`)."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

from . import __version__
from ._assemble import assemble
from ._executor import resolve_workers, run_stages
from ._ops import RunContext
from ._plan import make_plan
from ._results import Results, StageRecord
from ._store import StageStore, atomic_write_text
from ._torch_settings import torch_settings


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


def run(config, pm, *, resume: bool = True, progress=None, on_stage=None) -> Results:
    """Execute ``config``; always writes ``results.json`` (complete, partial or failed) before returning/raising.

    :param progress: ``progress(description, total) -> advance(n)`` for long inner loops (embedding).
    :param on_stage: ``on_stage(stage, record, done, total)`` after every stage (the CLI's progress bar).
    """
    t0 = time.perf_counter()
    output_dir = Path(config.run.output_dir)
    plan = make_plan(config, pm)
    output_dir.mkdir(parents=True, exist_ok=True)
    store = StageStore(output_dir)
    ctx = RunContext(pm=pm, config=config, output_dir=output_dir, progress=progress)
    records: dict[str, StageRecord] = {}
    arrays: dict[str, dict] = {}
    status, error = "complete", None
    done = 0

    def finish(stage, record: StageRecord, arr) -> None:
        nonlocal done
        records[stage.id], arrays[stage.id] = record, arr
        done += 1
        pm.hook.w2s_stage_end(stage=stage, result=record)
        if on_stage is not None:
            on_stage(stage, record, done, len(plan.stages))

    def on_result(stage, result) -> None:
        record, arr = result
        store.save(record, arr)
        finish(stage, record, arr)

    with torch_settings(config.run.threads):
        pm.hook.w2s_run_start(config=config)
        try:
            pending = []
            for stage in plan.stages:
                if resume and store.has(stage.id):
                    record, arr = store.load(stage.id)
                    record.cached = True
                    finish(stage, record, arr)
                else:
                    pending.append(stage)
            run_stages(ctx, pending, upstream=lambda st: [(records[d], arrays[d]) for d in st.deps],
                       is_done=records.__contains__, on_result=on_result,
                       workers=resolve_workers(config.run.workers))
        except BaseException as exc:  # noqa: BLE001 - keep what finished: results.json is written either way
            status, error = ("partial" if records else "failed"), exc
    finished = records.values()
    timings = {"total_seconds": time.perf_counter() - t0,
               "computed_seconds": sum(r.seconds or 0.0 for r in finished if not r.cached),
               "stages_computed": sum(not r.cached for r in finished),
               "stages_cached": sum(bool(r.cached) for r in finished)}
    device_name = str(ctx._device) if ctx._device is not None else config.run.device
    results = assemble(config, plan, records, status, environment(device_name), timings)
    if error is not None:
        results.error = f"{type(error).__name__}: {error}"
    atomic_write_text(output_dir / "results.json", results.to_json())
    pm.hook.w2s_run_end(results=results)
    if error is not None:
        raise error
    return results
