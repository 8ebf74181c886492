"""The runner: orchestration only. It plans (:mod:`._plan`), serves finished stages from the store, executes the
rest (:mod:`._executor`), and assembles the typed :class:`~w2s_harness.Results` (:mod:`._results`)."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

from . import __version__
from ._executor import resolve_workers, run_stages
from ._ops import RunContext
from ._plan import Plan, make_plan
from ._results import ComparisonResult, ExperimentResult, Results, RungResult, StageRecord, Summary
from ._stats import pgr
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


def assemble(config, plan: Plan, records: dict[str, StageRecord], status: str, env: dict,
             timings: dict) -> Results:
    """The :class:`Results` of ``plan`` from its finished stage records (unfinished stages: ``None`` metrics)."""
    seeds = list(plan.experiments)
    by_name: dict[str, dict[int, Any]] = {}
    for seed, exps in plan.experiments.items():
        for e in exps:
            by_name.setdefault(e.name, {})[seed] = e

    def accs(per_seed: dict[int, Any], pick) -> list:
        """Test accuracy of the stage ``pick(experiment)`` for every seed (None where not finished)."""
        out = []
        for s in seeds:
            rec = records.get(pick(per_seed[s]).id) if s in per_seed else None
            out.append((rec.metrics or {}).get("test_acc") if rec is not None else None)
        return out

    experiments, pgr_per_name = [], {}
    for name, per_seed in by_name.items():
        first = next(iter(per_seed.values()))
        weak, ceil, trans = (accs(per_seed, lambda e: e.weak), accs(per_seed, lambda e: e.ceiling),
                             accs(per_seed, lambda e: e.transfer))
        pgrs = [pgr(w, c, t) if None not in (w, c, t) else None for w, c, t in zip(weak, ceil, trans)]
        pgr_per_name[name] = pgrs
        rungs = [RungResult(label, Summary.of(accs(per_seed, lambda e, i=i: e.rungs[i][1])))
                 for i, (label, _) in enumerate(first.rungs)]
        experiments.append(ExperimentResult(
            name=name, dataset=config.dataset.name, strategy=first.strategy, loss=first.loss,
            weak=first.weak_model, strong=first.strong_model,
            rungs=[r.model for r in rungs] or [first.weak_model, first.strong_model], seeds=seeds,
            weak_acc=Summary.of(weak), ceiling_acc=Summary.of(ceil), transfer_acc=Summary.of(trans),
            pgr=Summary.of(pgrs), rung_acc=rungs, baseline=first.baseline))
    comparisons = [ComparisonResult.between(c.a, c.b, pgr_per_name[c.a], pgr_per_name[c.b])
                   for c in plan.comparisons if c.a in pgr_per_name and c.b in pgr_per_name]
    stages = [records.get(st.id) or StageRecord(st.id, st.op, str(st.kind), st.name, st.seed, st.spec)
              for st in plan.stages]
    return Results(status=status, config=config.to_dict(), environment=env, experiments=experiments,
                   comparisons=comparisons, stages=stages, timings=timings)


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
