"""The results schema: typed records of a run, exactly what ``results.json`` holds.

One type per noun: a :class:`StageRecord` is what a finished stage produced (the runner stores it, the executor
returns it, ``w2s_stage_end`` receives it); :class:`Results` is the whole run (``results.json``, the report, the
plots and ``w2s_run_end`` all use it). ``to_dict`` / ``from_dict`` convert to and from the JSON document;
:data:`SCHEMA_VERSION` is bumped on any breaking change to it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._contracts.errors import ConfigError
from .._engine.stage import StageRecord

SCHEMA_VERSION = 1


@dataclass
class Summary:
    """A statistic over seeds: mean, median and a 95% bootstrap CI of the mean over the defined values.

    :ivar per_seed: one value per seed of the run, ``None`` where undefined (not finished, NaN, or PGR undefined).
    :ivar n: how many seeds were defined (entered the statistics): the seeds used.
    :ivar n_run: how many seeds the run has (``len(per_seed)`` unless given).
    :ivar dropped: the seeds left out of the statistics, each ``{"seed": 3, "reason": "..."}``: ``"not finished
        (transfer)"``, ``"NaN accuracy (weak)"``, ``"ceiling 0.712 <= weak 0.720 (no gap to recover)"``.
    :ivar na: why the statistic should not be quoted although it may have values (``"weak >= ceiling"``, ``"weak
        >= ceiling on the mean"``); ``None`` when it applies. The report prints ``n/a: <na>`` instead of a number.
    """

    mean: float | None = None
    median: float | None = None
    ci95: list[float] | None = None
    per_seed: list[float | None] = field(default_factory=list)
    n: int = 0
    n_run: int | None = None
    dropped: list[dict[str, Any]] = field(default_factory=list)
    na: str | None = None

    def __post_init__(self):
        if self.n_run is None:
            self.n_run = len(self.per_seed)

    @classmethod
    def of(cls, values: Sequence[float | None], *, seeds: Sequence[int] | None = None,
           reasons: Sequence[str | None] | None = None, na: str | None = None) -> Summary:
        """Summarise one value per seed (``None`` / NaN: dropped, with ``reasons[i]`` as the reason).

        :param seeds: the seed of each value, to name dropped seeds (default: their positions).
        :param reasons: per value, why it is undefined (``None`` where it is defined).
        :param na: see :attr:`na`.
        """
        from .stats import summarize

        return cls(**summarize(values, seeds=seeds, reasons=reasons), na=na)

    def reasons(self, seeds: Sequence[int]) -> list[str | None]:
        """Per seed of ``seeds``, the reason it was dropped (``None`` where it was used)."""
        why = {d.get("seed"): d.get("reason") for d in self.dropped}
        return [why.get(s) for s in seeds]

    @classmethod
    def from_dict(cls, d: dict | None, *, seeds: Sequence[int] | None = None,
                  reasons: Sequence[str | None] | None = None) -> Summary:
        """Read a summary; one written before ``n_run`` / ``dropped`` existed gets them from ``per_seed``
        (``seeds`` and ``reasons`` name the undefined entries, as in :meth:`of`)."""
        from .stats import undefined

        d = d or {}
        per_seed = list(d.get("per_seed") or [])
        if "dropped" in d:
            dropped = [dict(x) for x in d.get("dropped") or []]
        else:
            ids = list(seeds) if seeds is not None and len(seeds) == len(per_seed) else list(range(len(per_seed)))
            why = list(reasons) if reasons is not None and len(reasons) == len(per_seed) else [None] * len(per_seed)
            dropped = [{"seed": ids[i], "reason": why[i] or ("undefined" if v is None else "NaN")}
                       for i, v in enumerate(per_seed) if undefined(v)]
        return cls(d.get("mean"), d.get("median"), d.get("ci95"), per_seed, d.get("n", 0),
                   d.get("n_run", len(per_seed)), dropped, d.get("na"))


@dataclass
class RungResult:
    """Test accuracy of one rung of a label chain, over seeds."""

    model: str
    acc: Summary


#: The :class:`Analysis` summaries, in results.json order (``gain_misfit`` follows them).
ANALYSIS_KEYS = ("agreement", "agreement_weak_right", "agreement_weak_wrong", "misfit_err_train2", "misfit_kl_train2",
                 "misfit_err_test", "misfit_kl_test", "label_acc_train2", "gain", "weak_auroc", "ceiling_auroc",
                 "transfer_auroc", "pgr_auroc")


def _summary() -> Summary:
    return Summary()


@dataclass
class Analysis:
    """Why a row's transfer generalised (or not), over seeds: each field a :class:`Summary` like ``pgr``.

    Computed at assemble time from the stages' stored predictions (:mod:`w2s_harness._results.analysis`).

    :ivar agreement: student-supervisor agreement on test: the fraction of test rows where the transfer model's
        argmax equals the weak model's; ``agreement_weak_right`` / ``agreement_weak_wrong`` on the test rows the
        weak model classifies correctly / wrongly (agreeing where the weak model is wrong imitates its errors).
    :ivar misfit_err_train2: the fraction of the rows the student was given labels for (train2) where its argmax
        differs from its training labels'; ``misfit_kl_train2`` the mean ``KL(labels || student)`` there (nats).
    :ivar misfit_err_test: ``1 - agreement``; ``misfit_kl_test`` the mean ``KL(weak || student)`` on test.
    :ivar label_acc_train2: accuracy of the student's training labels against ground truth (the supervision's noise).
    :ivar gain: ``transfer acc - weak acc`` on test.
    :ivar weak_auroc: test AUROC of the weak model (``ceiling_auroc``, ``transfer_auroc`` likewise).
    :ivar pgr_auroc: PGR computed on AUROC instead of accuracy (``na`` and ``dropped`` as ``pgr``'s).
    :ivar gain_misfit: ``[{"seed", "gain", "misfit_err_test", "misfit_kl_test", "misfit_err_train2",
        "misfit_kl_train2"}]``, one per seed where the gain and the test misfit are defined.
    """

    agreement: Summary = field(default_factory=_summary)
    agreement_weak_right: Summary = field(default_factory=_summary)
    agreement_weak_wrong: Summary = field(default_factory=_summary)
    misfit_err_train2: Summary = field(default_factory=_summary)
    misfit_kl_train2: Summary = field(default_factory=_summary)
    misfit_err_test: Summary = field(default_factory=_summary)
    misfit_kl_test: Summary = field(default_factory=_summary)
    label_acc_train2: Summary = field(default_factory=_summary)
    gain: Summary = field(default_factory=_summary)
    weak_auroc: Summary = field(default_factory=_summary)
    ceiling_auroc: Summary = field(default_factory=_summary)
    transfer_auroc: Summary = field(default_factory=_summary)
    pgr_auroc: Summary = field(default_factory=_summary)
    gain_misfit: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict | None) -> Analysis | None:
        if not d:
            return None
        return cls(**{k: Summary.from_dict(d.get(k)) for k in ANALYSIS_KEYS},
                   gain_misfit=[dict(x) for x in d.get("gain_misfit") or []])


@dataclass
class ExperimentResult:
    """One row of the results table: weak, ceiling and transfer accuracy and PGR over seeds.

    ``pgr.dropped`` names the seeds whose PGR is undefined and why (a stage not finished, a NaN accuracy, the
    ceiling not above the weak model); ``pgr.na`` is set when the weak model is at or above the ceiling on every
    seed or on the mean, and the row's PGR should not be quoted.

    :ivar analysis: agreement, misfit and AUROC over seeds (:class:`Analysis`); ``None`` in files written before
        it existed, or when the stages' predictions were not at hand.
    :ivar stage_ids: ``{"weak", "ceiling", "transfer"}``: the stage id of each role per seed (``stages[]`` holds
        their records, e.g. the training curves).
    :ivar early_stop: ``{role: policy}`` for the roles whose stages selected a checkpoint (``"weak_val"``,
        ``"gt_val"``); a transfer with ``"gt_val"`` used ground truth (an oracle).
    :ivar split: ``"random"`` (the usual seeded train1/train2/test split) or ``"easy-to-hard"`` (weak supervision
        from the easy rows, test on the hard rows of a ``difficulty_column``; its ``dataset`` ends in
        ``[easy-to-hard]``).
    """

    name: str
    dataset: str
    strategy: str
    loss: str
    weak: str
    strong: str
    rungs: list[str]
    seeds: list[int]
    weak_acc: Summary
    ceiling_acc: Summary
    transfer_acc: Summary
    pgr: Summary
    rung_acc: list[RungResult] = field(default_factory=list)
    baseline: str | None = None
    analysis: Analysis | None = None
    stage_ids: dict[str, list[str | None]] = field(default_factory=dict)
    early_stop: dict[str, str] = field(default_factory=dict)
    split: str = "random"

    @property
    def oracle(self) -> bool:
        """Whether the transfer selected its checkpoint on ground truth (``early_stop = "gt_val"``)."""
        return self.early_stop.get("transfer") == "gt_val"

    @classmethod
    def from_dict(cls, d: dict) -> ExperimentResult:
        from .stats import acc_reason, gap_na, pgr_per_seed

        seeds = list(d.get("seeds") or [])

        def acc(raw: dict | None) -> Summary:  # older files: a None accuracy is an unfinished stage
            values = (raw or {}).get("per_seed") or []
            return Summary.from_dict(raw, seeds=seeds, reasons=[acc_reason(v) for v in values])

        per = [list((d.get(k) or {}).get("per_seed") or []) for k in ("weak_acc", "ceiling_acc", "transfer_acc")]
        pgr_dict, pgr_reasons = dict(d.get("pgr") or {}), None
        if "dropped" not in pgr_dict and all(len(p) == len(seeds) for p in per):
            pgr_reasons = pgr_per_seed(*per)[1]  # older files: the reasons follow from the accuracies
            pgr_dict.setdefault("na", gap_na(per[0], per[1]))
        return cls(
            name=d.get("name", ""), dataset=d.get("dataset", ""), strategy=d.get("strategy", ""),
            loss=d.get("loss", ""), weak=d.get("weak", ""), strong=d.get("strong", ""),
            rungs=list(d.get("rungs") or []), seeds=seeds,
            weak_acc=acc(d.get("weak_acc")), ceiling_acc=acc(d.get("ceiling_acc")),
            transfer_acc=acc(d.get("transfer_acc")),
            pgr=Summary.from_dict(pgr_dict, seeds=seeds, reasons=pgr_reasons),
            rung_acc=[RungResult(r.get("model", ""), acc(r.get("acc"))) for r in d.get("rung_acc", [])],
            baseline=d.get("baseline"),
            analysis=Analysis.from_dict(d.get("analysis")),
            stage_ids={k: list(v) for k, v in (d.get("stage_ids") or {}).items()},
            early_stop=dict(d.get("early_stop") or {}),
            split=d.get("split", "random"),
        )


@dataclass
class ComparisonResult(Summary):
    """The per-seed paired difference ``a - b`` of a metric (PGR) between two rows.

    Unlike a row's summary, ``per_seed`` holds only the differences of the seeds where both rows are defined (in
    seed order); ``n_run`` counts the run's seeds and ``dropped`` names the others with the rows' reasons (the row
    named unless both share it). ``na`` is set when either row's PGR does not apply.

    :ivar wins: seeds where ``a > b``.
    :ivar seeds: seeds where both are defined (the seeds used, equal to ``n``).
    """

    a: str = ""
    b: str = ""
    metric: str = "pgr"
    wins: int = 0
    seeds: int = 0

    @classmethod
    def between(cls, a: str, b: str, values_a: Sequence, values_b: Sequence, metric: str = "pgr", *,
                seeds: Sequence[int] | None = None, reasons_a: Sequence[str | None] | None = None,
                reasons_b: Sequence[str | None] | None = None, na: str | None = None) -> ComparisonResult:
        """The paired difference of two rows' per-seed values (``reasons_*``: why a row's seed is undefined)."""
        from .stats import paired_difference

        return cls(a=a, b=b, metric=metric, na=na,
                   **paired_difference(values_a, values_b, seeds=seeds, reasons_a=reasons_a, reasons_b=reasons_b,
                                       names=(a, b)))

    @classmethod
    def from_dict(cls, d: dict) -> ComparisonResult:
        base = Summary.from_dict(d)
        return cls(**dataclasses.asdict(base), a=d.get("a", ""), b=d.get("b", ""), metric=d.get("metric", "pgr"),
                   wins=d.get("wins", 0), seeds=d.get("seeds", 0))

    def _fill_from_rows(self, rows: dict[str, ExperimentResult]) -> None:
        """Name the dropped seeds of a comparison read from a file written before ``dropped`` existed, from its
        two rows' PGR summaries (the numbers are kept as stored)."""
        from .stats import pair_reasons, paired_difference

        ra, rb = rows.get(self.a), rows.get(self.b)
        if ra is None or rb is None or ra.seeds != rb.seeds or self.metric != "pgr":
            return
        redo = paired_difference(ra.pgr.per_seed, rb.pgr.per_seed, seeds=ra.seeds, reasons_a=ra.pgr.reasons(ra.seeds),
                                 reasons_b=rb.pgr.reasons(rb.seeds), names=(self.a, self.b))
        self.n_run, self.dropped = redo["n_run"], redo["dropped"]
        if self.na is None:
            self.na = pair_reasons(self.a, ra.pgr.na, self.b, rb.pgr.na)


@dataclass
class Results:
    """A whole run, as ``results.json`` holds it.

    :ivar status: ``complete``, ``partial`` (some stages finished) or ``failed`` (none did).
    :ivar config: the fully resolved config (``RunConfig.to_dict()``, plugin options under ``extra``).
    :ivar environment: package versions, device, git commit.
    :ivar stages: one record per planned stage, finished or not.
    :ivar failures: the stages whose op raised, each ``{"id", "name", "seed", "error"}`` (``error``: the
        exception's type and last line); the stages that depend on them did not run. Empty when none failed.
    """

    status: str
    config: dict[str, Any]
    environment: dict[str, Any]
    experiments: list[ExperimentResult]
    comparisons: list[ComparisonResult]
    stages: list[StageRecord]
    timings: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    schema_version: int = SCHEMA_VERSION
    failures: list[dict[str, Any]] = field(default_factory=list)

    def experiment(self, name: str) -> ExperimentResult:
        for e in self.experiments:
            if e.name == name:
                return e
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        d = {"schema_version": self.schema_version, "status": self.status, "config": self.config,
             "environment": self.environment,
             "experiments": [dataclasses.asdict(e) for e in self.experiments],
             "comparisons": [dataclasses.asdict(c) for c in self.comparisons],
             "stages": [s.to_dict() for s in self.stages], "timings": self.timings}
        if self.error is not None:
            d["error"] = self.error
        if self.failures:
            d["failures"] = [dict(f) for f in self.failures]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Results:
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ConfigError(f"results schema_version {version!r} is not {SCHEMA_VERSION}; re-run the experiment "
                              f"with this version of w2s-harness to rewrite results.json")
        experiments = [ExperimentResult.from_dict(e) for e in d.get("experiments", [])]
        comparisons = []
        rows = {e.name: e for e in experiments}
        for c in d.get("comparisons", []):
            comparisons.append(ComparisonResult.from_dict(c))
            if "dropped" not in c:  # written before comparisons named their dropped seeds
                comparisons[-1]._fill_from_rows(rows)
        return cls(
            status=d.get("status", "?"), config=d.get("config", {}), environment=d.get("environment", {}),
            experiments=experiments, comparisons=comparisons,
            stages=[StageRecord.from_dict(s) for s in d.get("stages", [])], timings=d.get("timings", {}),
            error=d.get("error"), schema_version=version, failures=[dict(f) for f in d.get("failures") or []],
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str) + "\n"

    @classmethod
    def read(cls, path: str | Path) -> Results:
        """Load ``results.json`` (or a run directory holding one); a one-line error if it is missing or invalid."""
        p = Path(path)
        p = p / "results.json" if p.is_dir() else p
        if not p.is_file():
            raise ConfigError(f"no results.json at {str(p)!r}; pass a run's output directory")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{str(p)!r} is not valid JSON ({exc}); re-run the experiment to rewrite it") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{str(p)!r} is not a results document (a JSON object)")
        return cls.from_dict(data)
