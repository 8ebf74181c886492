"""From finished stage records to the typed :class:`~w2s_harness.Results`: per-row accuracies and PGR over seeds,
and the paired comparisons between rows. Every summary names the seeds it leaves out and why (not finished, NaN
accuracy, no gap to recover), and a row whose weak model is at or above the ceiling says so (``pgr.na``).

With the stages' arrays at hand (the runner passes them), every row also gets its :class:`~w2s_harness._results.results.
Analysis`: agreement, misfit and AUROC over seeds, computed from the stored predictions, so no stage reruns."""

from __future__ import annotations

from typing import Any

from .._engine.stage import StageRecord
from .._plan.planner import Plan
from .results import Analysis, ComparisonResult, ExperimentResult, Results, RungResult, Summary
from .stats import acc_reason, gap_na, pair_reasons, pgr_per_seed

ROLES = ("weak", "ceiling", "transfer")


def assemble_all(config, parts: list, records: dict[str, StageRecord], status: str, env: dict,
                 timings: dict, arrays: dict[str, dict] | None = None) -> Results:
    """The :class:`Results` of a run over one or several datasets: ``parts`` is ``[(single-dataset config,
    plan)]``. With several datasets every row and comparison name starts with ``"<dataset>:"`` so names stay
    unique in results.json; the config recorded is the whole run's. ``arrays`` (stage id -> arrays of the
    finished stages) adds every row's :class:`Analysis`."""
    from .._data.difficulty import labels as dataset_labels
    from .._data.difficulty import split_of

    many = len(parts) > 1
    # two datasets of one kind (two `local` files) are told apart by their position in the config, and an
    # easy-to-hard split by a "[easy-to-hard]" suffix (see _difficulty)
    labels = dataset_labels([sub.dataset for sub, _ in parts])
    merged: Results | None = None
    for (sub, plan), label in zip(parts, labels):
        res = assemble(sub, plan, records, status, env, timings, prefix=f"{label}:" if many else "",
                       dataset=label, arrays=arrays)
        for e in res.experiments:
            e.split = split_of(sub.dataset)
        if merged is None:
            merged = res
        else:
            merged.experiments += res.experiments
            merged.comparisons += res.comparisons
            merged.stages += res.stages
    merged.config = config.to_dict()
    return merged


def assemble(config, plan: Plan, records: dict[str, StageRecord], status: str, env: dict,
             timings: dict, prefix: str = "", dataset: str | None = None,
             arrays: dict[str, dict] | None = None) -> Results:
    """The :class:`Results` of ``plan`` from its finished stage records (unfinished stages: ``None`` metrics).
    ``prefix`` goes before every row and comparison name; ``dataset`` is the rows' dataset column (default the
    dataset's name); ``arrays`` (stage id -> arrays) adds each row's :class:`Analysis` (needs ``plan.dataset``)."""
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
            baseline=prefix + first.baseline if first.baseline else None,
            analysis=analysis_of(per_seed, seeds, records, arrays, plan.dataset, weak, trans),
            stage_ids={role: [getattr(per_seed[s], role).id if s in per_seed else None for s in seeds]
                       for role in ROLES},
            early_stop=early_stop_of(per_seed, records)))
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


def early_stop_of(per_seed: dict[int, Any], records: dict[str, StageRecord]) -> dict[str, str]:
    """``{role: policy}`` of the roles whose finished stages selected a checkpoint (``early_stop`` metrics)."""
    out: dict[str, str] = {}
    for role in ROLES:
        for e in per_seed.values():
            rec = records.get(getattr(e, role).id)
            policy = ((rec.metrics or {}).get("early_stop") or {}).get("policy") if rec is not None else None
            if policy and policy != "none":
                out[role] = policy
                break
    return out


def _stage_auroc(rec: StageRecord | None, arr: dict | None, labels, test_rows) -> float | None:
    """A finished train stage's test AUROC (its ``test_auroc`` metric, else from its arrays); NaN where undefined
    (one class in test) or unknown, ``None`` when the stage did not finish."""
    from .analysis import auroc, lookup

    if rec is None or not rec.finished:
        return None
    if "test_auroc" in rec.metrics:
        value = rec.metrics["test_auroc"]
    elif arr is not None and labels is not None:
        value = auroc(lookup(arr, test_rows), labels[test_rows])
    else:
        value = None
    return float("nan") if value is None else float(value)


#: Why a per-seed analysis value is undefined although its stages finished.
_UNDEFINED = {
    "agreement_weak_right": "the weak model is wrong on every test row",
    "agreement_weak_wrong": "the weak model is right on every test row",
}


def analysis_of(per_seed: dict[int, Any], seeds: list[int], records: dict[str, StageRecord],
                arrays: dict[str, dict] | None, dataset: Any, weak_acc: list, transfer_acc: list) -> Analysis | None:
    """The :class:`Analysis` of one row over ``seeds`` from the stages' arrays; ``None`` without arrays or a
    dataset."""
    if arrays is None or dataset is None:
        return None
    import numpy as np

    from .._plan.planner import Subset
    from .analysis import SEED_KEYS, merged_labels, seed_analysis

    labels = np.asarray(dataset.load().labels)
    values: dict[str, list] = {k: [] for k in SEED_KEYS}
    reasons: dict[str, list] = {k: [] for k in SEED_KEYS}
    aurocs: dict[str, list] = {role: [] for role in ROLES}
    for s in seeds:
        e = per_seed.get(s)
        recs = {role: records.get(getattr(e, role).id) if e is not None else None for role in ROLES}
        splits = dataset.splits(s) if e is not None else None
        for role in ROLES:
            arr = arrays.get(getattr(e, role).id) if e is not None else None
            aurocs[role].append(_stage_auroc(recs[role], arr, labels, splits.test if splits is not None else None))
        missing = [r for r in ("weak", "transfer") if recs[r] is None or not recs[r].finished
                   or getattr(e, r).id not in arrays]
        if missing:
            for k in SEED_KEYS:
                values[k].append(None)
                reasons[k].append(f"not finished ({', '.join(missing)})")
            continue
        spec = recs["transfer"].spec or {}
        gt = spec.get("labels", "gt") == "gt"
        supervision = None if gt else merged_labels([arrays[d] for d in spec.get("deps", []) if d in arrays])
        on = Subset(**spec["on"]).indices(splits, s) if "on" in spec else None
        got = seed_analysis(labels=labels, test_rows=splits.test, weak=arrays[e.weak.id],
                            transfer=arrays[e.transfer.id], supervision=supervision, train_rows=on)
        for k in SEED_KEYS:
            values[k].append(got[k])
            if got[k] is not None:
                reasons[k].append(None)
            elif k.endswith("train2"):
                reasons[k].append("the transfer trained on ground truth" if gt else "no labelled training rows")
            else:
                reasons[k].append(_UNDEFINED.get(k, "undefined"))

    def summary(key: str) -> Summary:
        return Summary.of(values[key], seeds=seeds, reasons=reasons[key])

    gains, gain_reasons = [], []
    for w, t in zip(weak_acc, transfer_acc):
        why = "; ".join(f"{r} ({what})" for what, r in (("weak", acc_reason(w)), ("transfer", acc_reason(t))) if r)
        gains.append(None if why else t - w)
        gain_reasons.append(why or None)
    auroc_summaries = {role: Summary.of(aurocs[role], seeds=seeds, reasons=[acc_reason(v, "AUROC")
                                                                             for v in aurocs[role]])
                       for role in ROLES}
    pgr_values, pgr_reasons = pgr_per_seed(aurocs["weak"], aurocs["ceiling"], aurocs["transfer"], metric="AUROC")
    pairs = []
    for i, s in enumerate(seeds):
        if gains[i] is None or values["misfit_err_test"][i] is None:
            continue
        pairs.append({"seed": s, "gain": gains[i],
                      **{k: values[k][i] for k in ("misfit_err_test", "misfit_kl_test", "misfit_err_train2",
                                                  "misfit_kl_train2")}})
    return Analysis(
        **{k: summary(k) for k in SEED_KEYS},
        gain=Summary.of(gains, seeds=seeds, reasons=gain_reasons),
        weak_auroc=auroc_summaries["weak"], ceiling_auroc=auroc_summaries["ceiling"],
        transfer_auroc=auroc_summaries["transfer"],
        pgr_auroc=Summary.of(pgr_values, seeds=seeds, reasons=pgr_reasons,
                             na=gap_na(aurocs["weak"], aurocs["ceiling"])),
        gain_misfit=pairs,
    )
