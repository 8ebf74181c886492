"""Experiment tracking as observers: ``w2s-harness run --track mlflow`` (or ``wandb``, or ``mlflow,wandb``).

This plugin registers no component; it adds the ``--track`` options through ``w2s_add_options`` and follows the run
through the lifecycle hooks, exactly as a third-party observer would (docs/plugins/observers.md). The trackers
themselves (:mod:`.mlflow`, :mod:`.wandb`) import their library only when a run asks for them, so neither is a
dependency of the harness: ``pip install 'w2s-harness[mlflow]'`` / ``'w2s-harness[wandb]'``.

What every tracker records (:class:`Tracker`): the resolved config; per stage, its numeric metrics and seconds
under the stage's name, in a per-seed child run (MLflow) or under a per-seed key (W&B), so the tracker's own run
comparison works across seeds; at the end, the summary rows (PGR mean / CI / median / seeds used and run, the
accuracies, the paired comparisons), ``results.json`` and the report's figures as artifacts.
"""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from pathlib import Path
from typing import Any

from w2s_harness import ConfigError, hookimpl

#: tracker name -> (module of this package, the library it needs, the extra that installs it)
TRACKERS = {"mlflow": ("mlflow", "mlflow", "mlflow"), "wandb": ("wandb", "wandb", "wandb")}

class Tracker:
    """One experiment tracker following a run. Subclasses implement the ``_``-prefixed methods; the public ones
    never raise: a tracker that fails warns once and stops, the run goes on (an observer must not stop a run)."""

    name = "tracker"

    def __init__(self, options: dict[str, Any]):
        self.options = options
        self.alive = True

    def _guard(self, what: str, fn, *args) -> None:
        if not self.alive:
            return
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - any tracker failure is reported, never raised into the run
            self.alive = False
            first = (str(exc).splitlines() or [""])[0]
            print(f"warning: --track {self.name}: {what} failed ({type(exc).__name__}: {first}); tracking is off "
                  f"for the rest of this run", file=sys.stderr)

    def start(self, config) -> None:
        self._guard("starting the run", self._start, config)

    def stage(self, stage, record) -> None:
        if record.metrics is not None:
            self._guard(f"logging stage {stage.name!r}", self._stage, stage, record)

    def end(self, results) -> None:
        self._guard("logging the results", self._end, results)

    def _start(self, config) -> None:
        raise NotImplementedError

    def _stage(self, stage, record) -> None:
        raise NotImplementedError

    def _end(self, results) -> None:
        raise NotImplementedError


# ------------------------------------------------------------------------------------ what gets logged


def metric_key(text: str) -> str:
    """A metric or param name every tracker accepts: MLflow allows letters, digits, ``_ - . / : `` and space only
    (``transfer[naive/xent]`` -> ``transfer_naive/xent_``)."""
    return re.sub(r"[^\w\-./: ]", "_", text)


def stage_metrics(record) -> dict[str, float]:
    """A finished stage's numeric scalar metrics (test_acc, test_auroc, steps, ...) and its seconds; lists (the
    training curve) and tables are left to results.json, which is logged whole."""
    out = {k: float(v) for k, v in (record.metrics or {}).items()
           if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)}
    if record.seconds is not None:
        out["seconds"] = float(record.seconds)
    out["cached"] = float(bool(record.cached))
    return out


def _summary_numbers(prefix: str, s) -> dict[str, float]:
    out = {}
    for key in ("mean", "median"):
        if getattr(s, key) is not None:
            out[f"{prefix}_{key}"] = float(getattr(s, key))
    if s.ci95:
        out[f"{prefix}_ci_low"], out[f"{prefix}_ci_high"] = float(s.ci95[0]), float(s.ci95[1])
    return out


def summary_rows(results) -> dict[str, float]:
    """The report's summary as flat metrics: per row ``<row>/pgr_mean``, ``pgr_ci_low`` / ``_high``,
    ``pgr_median``, ``pgr_seeds_used`` / ``_run`` and the accuracies' means; per comparison ``<a> - <b>/...`` with
    ``wins``. A row whose PGR is ``n/a`` logs no PGR number (the reason is a tag / summary text)."""
    out: dict[str, float] = {}
    for e in results.experiments:
        row = metric_key(e.name)
        if not e.pgr.na:
            out.update({f"{row}/{k}": v for k, v in _summary_numbers("pgr", e.pgr).items()})
        out[f"{row}/pgr_seeds_used"], out[f"{row}/pgr_seeds_run"] = float(e.pgr.n), float(e.pgr.n_run or 0)
        for key in ("weak_acc", "transfer_acc", "ceiling_acc"):
            if getattr(e, key).mean is not None:
                out[f"{row}/{key}_mean"] = float(getattr(e, key).mean)
    for c in results.comparisons:
        row = metric_key(f"{c.a} - {c.b}")
        if not c.na:
            out.update({f"{row}/{k}": v for k, v in _summary_numbers("diff", c).items()})
        out[f"{row}/wins"], out[f"{row}/seeds_used"] = float(c.wins), float(c.n)
    return out


def per_seed_rows(results) -> dict[int, dict[str, float]]:
    """Per seed, every row's accuracies and PGR on that seed (what a tracker compares across seed runs)."""
    out: dict[int, dict[str, float]] = {}
    for e in results.experiments:
        row = metric_key(e.name)
        for i, seed in enumerate(e.seeds):
            values = out.setdefault(seed, {})
            for key, s in (("weak_acc", e.weak_acc), ("transfer_acc", e.transfer_acc),
                           ("ceiling_acc", e.ceiling_acc), ("pgr", e.pgr)):
                v = s.per_seed[i] if i < len(s.per_seed) else None
                if v is not None and not math.isnan(v):
                    values[f"{row}/{key}"] = float(v)
    return out


def flat_config(d: dict, prefix: str = "") -> dict[str, str]:
    """``{"run.seeds": "[0, 1]", "strong.name": "glove-bow", ...}``: the config as params."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flat_config(v, f"{key}."))
        else:
            out[metric_key(key)] = str(v)
    return out


def draw_figures(results, tmp: Path) -> list[Path]:
    """The report's figures for ``results`` (PNG), drawn into ``tmp`` for upload: the run folder stays as
    ``run`` leaves it (``w2s-harness report`` writes figures there when asked)."""
    from w2s_harness import write_figures

    return write_figures(results, tmp)



# ------------------------------------------------------------------------------------------------ hooks


@hookimpl
def w2s_add_options(parser):
    group = parser.add_argument_group("tracking (built-in observers)")
    group.add_argument("--track", metavar="NAME[,NAME]",
                       help="log the run to an experiment tracker: mlflow, wandb, or both (mlflow,wandb); needs "
                            "pip install 'w2s-harness[mlflow]' / '[wandb]'")
    group.add_argument("--mlflow-uri", metavar="URI",
                       help="(--track mlflow) tracking server or store URI (default: a local store in ./mlruns)")


def parse_track(value: str | None) -> list[str]:
    """The tracker names of ``--track`` (comma-separated); a one-line error for an unknown one or a missing
    library, naming the fix."""
    names = [n.strip() for n in (value or "").split(",") if n.strip()]
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"--track {name!r}: unknown tracker; use one of {', '.join(TRACKERS)}")
        _, library, extra = TRACKERS[name]
        if importlib.util.find_spec(library) is None:  # checked without importing it: validate stays fast
            raise ConfigError(f"--track {name} needs the {library} package: pip install 'w2s-harness[{extra}]'")
    return list(dict.fromkeys(names))


#: the options this plugin adds (their ``config.extra`` keys)
OPTIONS = ("track", "mlflow_uri")


#: the name the per-run tracking object is registered under on the run's plugin manager
RUN_PLUGIN = "w2s-tracking-run"


class TrackedRun:
    """The trackers of one run, registered on that run's plugin manager by :func:`w2s_configure`: the run's
    state lives here, not in module globals, so two plugin managers (two runs in one process) never share it."""

    def __init__(self, trackers: list[Tracker]):
        self.trackers = trackers

    @hookimpl
    def w2s_run_start(self, config):
        for tracker in self.trackers:
            tracker.start(config)

    @hookimpl
    def w2s_stage_end(self, stage, result):
        for tracker in self.trackers:
            tracker.stage(stage, result)

    @hookimpl
    def w2s_run_end(self, results):
        for tracker in self.trackers:
            tracker.end(results)


@hookimpl
def w2s_configure(config, pm):
    extra = config.extra
    for key in OPTIONS:  # not given: not recorded, so a run without tracking has the results.json it always had
        if extra.get(key) is None:
            extra.pop(key, None)
    if pm.get_plugin(RUN_PLUGIN) is not None:  # a second configure on the same manager replaces the first
        pm.unregister(name=RUN_PLUGIN)
    names = parse_track(extra.get("track"))
    if names:
        trackers = [importlib.import_module(f"{__name__}.{TRACKERS[n][0]}").make(extra) for n in names]
        pm.register(TrackedRun(trackers), name=RUN_PLUGIN)
