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

from ._errors import ConfigError

SCHEMA_VERSION = 1


@dataclass
class Summary:
    """A statistic over seeds: mean, median and a 95% bootstrap CI of the mean over the defined values.

    :ivar per_seed: one value per seed of the run, ``None`` where undefined (not finished, or PGR undefined).
    :ivar n: how many seeds were defined (entered the statistics).
    """

    mean: float | None = None
    median: float | None = None
    ci95: list[float] | None = None
    per_seed: list[float | None] = field(default_factory=list)
    n: int = 0

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Summary:
        from ._stats import summarize

        return cls(**summarize(values))

    @classmethod
    def from_dict(cls, d: dict | None) -> Summary:
        d = d or {}
        return cls(d.get("mean"), d.get("median"), d.get("ci95"), list(d.get("per_seed") or []), d.get("n", 0))


@dataclass
class RungResult:
    """Test accuracy of one rung of a label chain, over seeds."""

    model: str
    acc: Summary


@dataclass
class ExperimentResult:
    """One row of the results table: weak, ceiling and transfer accuracy and PGR over seeds."""

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

    @classmethod
    def from_dict(cls, d: dict) -> ExperimentResult:
        return cls(
            name=d.get("name", ""), dataset=d.get("dataset", ""), strategy=d.get("strategy", ""),
            loss=d.get("loss", ""), weak=d.get("weak", ""), strong=d.get("strong", ""),
            rungs=list(d.get("rungs") or []), seeds=list(d.get("seeds") or []),
            weak_acc=Summary.from_dict(d.get("weak_acc")), ceiling_acc=Summary.from_dict(d.get("ceiling_acc")),
            transfer_acc=Summary.from_dict(d.get("transfer_acc")), pgr=Summary.from_dict(d.get("pgr")),
            rung_acc=[RungResult(r.get("model", ""), Summary.from_dict(r.get("acc"))) for r in d.get("rung_acc", [])],
            baseline=d.get("baseline"),
        )


@dataclass
class ComparisonResult(Summary):
    """The per-seed paired difference ``a - b`` of a metric (PGR) between two rows.

    :ivar wins: seeds where ``a > b``.
    :ivar seeds: seeds where both are defined.
    """

    a: str = ""
    b: str = ""
    metric: str = "pgr"
    wins: int = 0
    seeds: int = 0

    @classmethod
    def between(cls, a: str, b: str, values_a: Sequence, values_b: Sequence, metric: str = "pgr"):
        from ._stats import paired_difference

        return cls(a=a, b=b, metric=metric, **paired_difference(values_a, values_b))

    @classmethod
    def from_dict(cls, d: dict) -> ComparisonResult:
        base = Summary.from_dict(d)
        return cls(**dataclasses.asdict(base), a=d.get("a", ""), b=d.get("b", ""), metric=d.get("metric", "pgr"),
                   wins=d.get("wins", 0), seeds=d.get("seeds", 0))


@dataclass
class StageRecord:
    """What one stage produced (its arrays are stored beside it, not here).

    :ivar kind: a :class:`~w2s_harness.StageKind` value (``"train_weak"``, ``"label"``, ...).
    :ivar spec: the JSON-able spec the stage id hashes.
    :ivar metrics: JSON-able metrics (``test_acc`` for train stages); ``None`` if the stage did not finish.
    :ivar cached: loaded from the stage store instead of computed; ``None`` if it did not finish.
    """

    id: str
    op: str
    kind: str
    name: str
    seed: int
    spec: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    seconds: float | None = None
    cached: bool | None = None

    @property
    def finished(self) -> bool:
        return self.metrics is not None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["kind"] = str(self.kind)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> StageRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class Results:
    """A whole run, as ``results.json`` holds it.

    :ivar status: ``complete``, ``partial`` (some stages finished) or ``failed`` (none did).
    :ivar config: the fully resolved config (``RunConfig.to_dict()``, plugin options under ``extra``).
    :ivar environment: package versions, device, git commit.
    :ivar stages: one record per planned stage, finished or not.
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
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Results:
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ConfigError(f"results schema_version {version!r} is not {SCHEMA_VERSION}; re-run the experiment "
                              f"with this version of w2s-harness to rewrite results.json")
        return cls(
            status=d.get("status", "?"), config=d.get("config", {}), environment=d.get("environment", {}),
            experiments=[ExperimentResult.from_dict(e) for e in d.get("experiments", [])],
            comparisons=[ComparisonResult.from_dict(c) for c in d.get("comparisons", [])],
            stages=[StageRecord.from_dict(s) for s in d.get("stages", [])], timings=d.get("timings", {}),
            error=d.get("error"), schema_version=version,
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
