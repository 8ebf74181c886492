"""The runner: plan every seed, execute stages in order with the stage cache, assemble ``results.json``."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from ._errors import ConfigError
from ._kinds import COMPONENT_SECTIONS, SECTION_KIND
from ._executor import resolve_workers, run_stages
from ._ops import RunContext
from ._plan import Comparison, ExperimentSpec, PlanBuilder, Stage, ref_key
from ._stats import paired_difference, pgr, summarize
from ._store import StageStore, atomic_write_json

SCHEMA_VERSION = 1


@dataclass
class Plan:
    """All seeds' stages (deduplicated, in dependency order) and report rows."""

    stages: list[Stage]
    experiments: dict[int, list[ExperimentSpec]]
    comparisons: list[Comparison] = field(default_factory=list)


def validate_components(config, pm) -> None:
    """Check every named component exists and accepts its parameters (no data is loaded)."""
    if not config.losses:
        raise ConfigError("no loss configured; set [loss] name or --loss xent")
    for section in COMPONENT_SECTIONS:
        comps = config.losses if section == "loss" else [config.component(section)]
        for comp in comps:
            pm.registry(SECTION_KIND[section]).check_params(comp.name, comp.params)


def make_plan(config, pm) -> Plan:
    validate_components(config, pm)
    strategy = pm.create("strategy", config.strategy.name, **config.strategy.params)
    dataset = pm.create("dataset", config.dataset.name, **config.dataset.params)
    context = {"dataset": {"name": config.dataset.name, **dataset.identity()}, "w2s_harness": __version__}
    identities: dict[str, Any] = {}

    def identify(ref: dict) -> Any:
        key = ref_key(ref)
        if key not in identities:
            params = {k: v for k, v in ref.items() if k != "name"}
            model = pm.create("model", ref["name"], **params)
            # identity() is part of the ModelSpec contract; a model without it is identified by its config
            identities[key] = model.identity() if hasattr(model, "identity") else ref
        return identities[key]

    stages: dict[str, Stage] = {}
    experiments: dict[int, list[ExperimentSpec]] = {}
    comparisons: list[Comparison] = []
    for seed in config.run.seeds:
        builder = PlanBuilder(config, seed, context, identify)
        strategy.plan(builder)
        if not builder.experiments:
            raise ConfigError(f"strategy {config.strategy.name!r} declared no experiment for seed {seed}")
        for sid, st in builder.stages.items():
            stages.setdefault(sid, st)
        experiments[seed] = builder.experiments
        if not comparisons:
            comparisons = builder.comparisons
    _check_stage_losses(stages.values(), pm)
    return Plan(list(stages.values()), experiments, comparisons)


def _check_stage_losses(stages, pm) -> None:
    """Create every loss a train stage names once, so a typo in a strategy option (a rung's or an inner loss)
    fails before anything trains instead of after the weak model did. Models are checked by ``identify``."""
    seen = set()
    for stage in stages:
        ref = stage.spec.get("loss") if stage.op == "train" else None
        if not isinstance(ref, dict) or ref_key(ref) in seen:
            continue
        seen.add(ref_key(ref))
        params = {k: v for k, v in ref.items() if k != "name"}
        pm.create("loss", ref["name"], **params)  # checks the parameters, then runs the factory's own checks


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


def assemble(config, plan: Plan, records: dict[str, dict], status: str, env: dict, timings: dict) -> dict:
    """Build the results.json document from finished stage records (missing stages -> null metrics)."""
    seeds = list(plan.experiments)
    by_name: dict[str, dict[int, ExperimentSpec]] = {}
    for seed, exps in plan.experiments.items():
        for e in exps:
            by_name.setdefault(e.name, {})[seed] = e

    def accs(per_seed: dict[int, ExperimentSpec], pick) -> list:
        """Test accuracy of the stage ``pick(experiment)`` for every seed (None where not finished)."""
        return [records.get(pick(per_seed[s]).id, {}).get("metrics", {}).get("test_acc")
                if s in per_seed else None for s in seeds]

    experiments = []
    pgr_per_name: dict[str, list] = {}
    for name, per_seed in by_name.items():
        first = next(iter(per_seed.values()))
        weak = accs(per_seed, lambda e: e.weak)
        ceil = accs(per_seed, lambda e: e.ceiling)
        trans = accs(per_seed, lambda e: e.transfer)
        pgrs = [pgr(w, c, t) if None not in (w, c, t) else None for w, c, t in zip(weak, ceil, trans)]
        pgr_per_name[name] = pgrs
        rungs = []
        for i, (label, _) in enumerate(first.rungs):
            vals = accs(per_seed, lambda e, i=i: e.rungs[i][1])
            rungs.append({"model": label, "acc": summarize(vals)})
        experiments.append({
            "name": name, "dataset": config.dataset.name, "strategy": first.strategy, "loss": first.loss,
            "weak": first.weak_model, "strong": first.strong_model,
            "rungs": [r["model"] for r in rungs] or [first.weak_model, first.strong_model],
            "seeds": seeds,
            "weak_acc": summarize(weak), "ceiling_acc": summarize(ceil), "transfer_acc": summarize(trans),
            "pgr": summarize(pgrs), "rung_acc": rungs, "baseline": first.baseline,
        })
    comparisons = []
    for c in plan.comparisons:
        if c.a in pgr_per_name and c.b in pgr_per_name:
            comparisons.append({"a": c.a, "b": c.b, "metric": "pgr",
                                **paired_difference(pgr_per_name[c.a], pgr_per_name[c.b])})
    stage_rows = [{"id": st.id, "kind": st.kind, "op": st.op, "name": st.name, "seed": st.seed,
                   "cached": records[st.id]["cached"] if st.id in records else None,
                   "seconds": records[st.id]["seconds"] if st.id in records else None,
                   "metrics": records[st.id]["metrics"] if st.id in records else None}
                  for st in plan.stages]
    return {"schema_version": SCHEMA_VERSION, "status": status, "config": config.to_dict(),
            "environment": env, "experiments": experiments, "comparisons": comparisons,
            "stages": stage_rows, "timings": timings}


def run(config, pm, *, resume: bool = True, progress=None, on_stage=None) -> dict:
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
    if config.run.threads:
        import torch

        torch.set_num_threads(config.run.threads)
    pm.hook.w2s_run_start(config=config)
    records: dict[str, dict] = {}
    arrays: dict[str, dict] = {}
    status, error = "complete", None
    device_name = config.run.device
    done = 0

    def finish(stage, record, arr):
        nonlocal done
        records[stage.id], arrays[stage.id] = record, arr
        done += 1
        pm.hook.w2s_stage_end(stage=stage, result=record)
        if on_stage is not None:
            on_stage(stage, record, done, len(plan.stages))

    def on_result(stage, result):
        nonlocal device_name
        metrics, arr, seconds = result
        record = {"id": stage.id, "op": stage.op, "kind": stage.kind, "name": stage.name,
                  "seed": stage.seed, "spec": stage.spec, "metrics": metrics, "seconds": seconds}
        store.save(stage.id, record, arr)
        device_name = str(ctx.device)
        finish(stage, {**record, "cached": False}, arr)

    try:
        pending = []
        for stage in plan.stages:
            if resume and store.has(stage.id):
                record, arr = store.load(stage.id)
                finish(stage, {**record, "cached": True}, arr)
            else:
                pending.append(stage)
        run_stages(ctx, pending, upstream=lambda st: [(records[d], arrays[d]) for d in st.deps],
                   is_done=records.__contains__, on_result=on_result,
                   workers=resolve_workers(config.run.workers))
    except BaseException as exc:  # noqa: BLE001 - keep what finished: results.json is written either way
        status, error = ("partial" if records else "failed"), exc
    timings = {"total_seconds": time.perf_counter() - t0,
               "computed_seconds": sum(r["seconds"] for r in records.values() if not r["cached"]),
               "stages_computed": sum(not r["cached"] for r in records.values()),
               "stages_cached": sum(bool(r["cached"]) for r in records.values())}
    results = assemble(config, plan, records, status, environment(device_name), timings)
    if error is not None:
        results["error"] = f"{type(error).__name__}: {error}"
    atomic_write_json(output_dir / "results.json", results)
    pm.hook.w2s_run_end(results=results)
    if error is not None:
        raise error
    return results
