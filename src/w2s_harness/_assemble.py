"""From finished stage records to the typed :class:`~w2s_harness.Results`: per-row accuracies and PGR over seeds,
and the paired comparisons between rows."""

from __future__ import annotations

from typing import Any

from ._plan import Plan
from ._results import ComparisonResult, ExperimentResult, Results, RungResult, StageRecord, Summary
from ._stats import pgr


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
