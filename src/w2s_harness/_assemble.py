"""From finished stage records to the typed :class:`~w2s_harness.Results`: per-row accuracies and PGR over seeds,
and the paired comparisons between rows. Every summary names the seeds it leaves out and why (not finished, NaN
accuracy, no gap to recover), and a row whose weak model is at or above the ceiling says so (``pgr.na``)."""

from __future__ import annotations

from typing import Any

from ._plan import Plan
from ._results import ComparisonResult, ExperimentResult, Results, RungResult, StageRecord, Summary
from ._stats import acc_reason, gap_na, pair_reasons, pgr_per_seed


def assemble_all(config, parts: list, records: dict[str, StageRecord], status: str, env: dict,
                 timings: dict) -> Results:
    """The :class:`Results` of a run over one or several datasets: ``parts`` is ``[(single-dataset config,
    plan)]``. With several datasets every row and comparison name starts with ``"<dataset>:"`` so names stay
    unique in results.json; the config recorded is the whole run's."""
    many = len(parts) > 1
    names = [sub.dataset.name for sub, _ in parts]
    # two datasets of one kind (two `local` files) are told apart by their position in the config
    labels = [n if names.count(n) == 1 else f"{n}#{i + 1}" for i, n in enumerate(names)]
    merged: Results | None = None
    for (sub, plan), label in zip(parts, labels):
        res = assemble(sub, plan, records, status, env, timings, prefix=f"{label}:" if many else "",
                       dataset=label)
        if merged is None:
            merged = res
        else:
            merged.experiments += res.experiments
            merged.comparisons += res.comparisons
            merged.stages += res.stages
    merged.config = config.to_dict()
    return merged


def assemble(config, plan: Plan, records: dict[str, StageRecord], status: str, env: dict,
             timings: dict, prefix: str = "", dataset: str | None = None) -> Results:
    """The :class:`Results` of ``plan`` from its finished stage records (unfinished stages: ``None`` metrics).
    ``prefix`` goes before every row and comparison name; ``dataset`` is the rows' dataset column (default the
    dataset's name)."""
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

    def acc_summary(values: list) -> Summary:
        return Summary.of(values, seeds=seeds, reasons=[acc_reason(v) for v in values])

    experiments, pgr_rows = [], {}
    for name, per_seed in by_name.items():
        first = next(iter(per_seed.values()))
        weak, ceil, trans = (accs(per_seed, lambda e: e.weak), accs(per_seed, lambda e: e.ceiling),
                             accs(per_seed, lambda e: e.transfer))
        pgrs, reasons = pgr_per_seed(weak, ceil, trans)
        pgr_summary = Summary.of(pgrs, seeds=seeds, reasons=reasons, na=gap_na(weak, ceil))
        pgr_rows[name] = (pgrs, reasons, pgr_summary.na)
        rungs = [RungResult(label, acc_summary(accs(per_seed, lambda e, i=i: e.rungs[i][1])))
                 for i, (label, _) in enumerate(first.rungs)]
        experiments.append(ExperimentResult(
            name=prefix + name, dataset=dataset or config.dataset.name, strategy=first.strategy, loss=first.loss,
            weak=first.weak_model, strong=first.strong_model,
            rungs=[r.model for r in rungs] or [first.weak_model, first.strong_model], seeds=seeds,
            weak_acc=acc_summary(weak), ceiling_acc=acc_summary(ceil), transfer_acc=acc_summary(trans),
            pgr=pgr_summary, rung_acc=rungs,
            baseline=prefix + first.baseline if first.baseline else None))
    comparisons = []
    for c in plan.comparisons:
        if c.a in pgr_rows and c.b in pgr_rows:
            (pa, ra, na_a), (pb, rb, na_b) = pgr_rows[c.a], pgr_rows[c.b]
            comparisons.append(ComparisonResult.between(prefix + c.a, prefix + c.b, pa, pb, seeds=seeds,
                                                        reasons_a=ra, reasons_b=rb,
                                                        na=pair_reasons(c.a, na_a, c.b, na_b)))
    stages = [records.get(st.id) or StageRecord(st.id, st.op, str(st.kind), st.name, st.seed, st.spec)
              for st in plan.stages]
    return Results(status=status, config=config.to_dict(), environment=env, experiments=experiments,
                   comparisons=comparisons, stages=stages, timings=timings)
