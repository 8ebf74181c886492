"""``w2s-harness compare RUN RUN...``: the rows of several runs in one table, and paired differences across runs.

Each run is labelled (``--label``, default its folder name), so rows that share a name (``naive/xent`` in both
runs) stay distinct. The first run is the baseline: every row of a later run is paired with each row of the
baseline run on the same dataset and loss, seed by seed (seeds matched by value: the same seed of the same
dataset is the same split). A pair says which stages the two rows share: with the same weak and ceiling stages
(``weak+ceiling``) the PGR difference is the transfer accuracy difference over the same gap; otherwise the gap
itself differs between the rows, and the transfer accuracy difference (also shown) is the cleaner figure.
A pair whose transfers are the same stages on every seed (the ``naive`` rows two strategies both plan) differs
by zero by construction and is named under the table instead of listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._contracts.errors import ConfigError


@dataclass
class Run:
    label: str
    path: Path  # the results.json
    results: Any  # Results


def _results_path(arg: str) -> Path:
    p = Path(arg)
    if p.is_dir():
        if not (p / "results.json").is_file():
            raise ConfigError(f"compare: folder {arg!r} has no results.json; pass a run's output directory (where "
                              f"`w2s-harness run -o DIR` wrote results.json) or the results.json file itself")
        return p / "results.json"
    if not p.exists():
        raise ConfigError(f"compare: {arg!r} does not exist; pass a run's output directory or its results.json")
    return p


def _default_labels(paths: Sequence[Path]) -> list[str]:
    """Each run's folder name; where two runs share it (``a/out``, ``b/out``), more of the path until they differ,
    then a position suffix."""
    for depth in (1, 2, 3):
        labels = ["/".join(p.parent.parts[-depth:]) or str(p.parent) for p in paths]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{label}#{i + 1}" for i, label in enumerate(labels)]


def load_runs(args: Sequence[str], labels: Sequence[str] | None = None) -> list[Run]:
    """The runs of ``args`` (folders or results.json files) with their labels; one-line errors for bad input."""
    if len(args) < 2:
        raise ConfigError("compare: needs at least two runs (run folders or results.json files); "
                          "use `w2s-harness report RUN` for one")
    paths = [_results_path(a) for a in args]
    if labels:
        if len(labels) != len(paths):
            raise ConfigError(f"compare: {len(labels)} --label for {len(paths)} runs; give one --label per run, "
                              f"in the runs' order (or none for the folder names)")
        dup = sorted({x for x in labels if list(labels).count(x) > 1})
        if dup:
            raise ConfigError(f"compare: --label {dup[0]!r} is given twice; each run needs its own label")
    from .results import Results

    runs = []
    for path, label in zip(paths, list(labels) if labels else _default_labels(paths)):
        runs.append(Run(label, path, Results.read(path)))
    return runs


# --------------------------------------------------------------------------------------------- pairing


@dataclass
class CrossPair:
    """A row of a later run against a row of the baseline run, over their common seeds."""

    a_run: str
    a: str
    b_run: str
    b: str
    shared: str  # "weak+ceiling", "weak", "ceiling" or "none"
    pgr: Any  # ComparisonResult
    transfer_acc: Any  # ComparisonResult


def _per_seed(e, summary, seeds: Sequence[int]) -> tuple[list, list]:
    pos = {s: i for i, s in enumerate(e.seeds)}
    values = [summary.per_seed[pos[s]] if pos[s] < len(summary.per_seed) else None for s in seeds]
    return values, summary.reasons(seeds)


def _ids(e, role: str, seeds: Sequence[int]) -> list:
    pos = {s: i for i, s in enumerate(e.seeds)}
    ids = e.stage_ids.get(role) or []
    return [ids[pos[s]] if pos[s] < len(ids) else None for s in seeds]


def _shared(a, b, seeds: Sequence[int]) -> str:
    same = [r for r in ("weak", "ceiling")
            if all(x is not None and x == y for x, y in zip(_ids(a, r, seeds), _ids(b, r, seeds)))]
    return "+".join(same) or "none"


def pair(a_run: str, a, b_run: str, b) -> tuple[CrossPair | None, str | None]:
    """The paired differences ``a - b`` over the seeds both rows ran, or ``None`` and why not."""
    from .results import ComparisonResult
    from .stats import pair_reasons

    name_a, name_b = f"{a_run}: {a.name}", f"{b_run}: {b.name}"
    seeds = [s for s in a.seeds if s in set(b.seeds)]
    if not seeds:
        return None, f"{name_a} vs {name_b}: no seed in common (seeds {a.seeds} vs {b.seeds}); not paired"
    ta, tb = _ids(a, "transfer", seeds), _ids(b, "transfer", seeds)
    if all(x is not None and x == y for x, y in zip(ta, tb)):
        return None, (f"{name_a} and {name_b} are the same stages on every common seed (difference 0 by "
                      f"construction); not listed")
    va, ra = _per_seed(a, a.pgr, seeds)
    vb, rb = _per_seed(b, b.pgr, seeds)
    pgr = ComparisonResult.between(name_a, name_b, va, vb, seeds=seeds, reasons_a=ra, reasons_b=rb,
                                   na=pair_reasons(name_a, a.pgr.na, name_b, b.pgr.na))
    xa, rxa = _per_seed(a, a.transfer_acc, seeds)
    xb, rxb = _per_seed(b, b.transfer_acc, seeds)
    acc = ComparisonResult.between(name_a, name_b, xa, xb, metric="transfer_acc", seeds=seeds, reasons_a=rxa,
                                   reasons_b=rxb)
    return CrossPair(a_run, a.name, b_run, b.name, _shared(a, b, seeds), pgr, acc), None


def cross_pairs(runs: Sequence[Run]) -> tuple[list[CrossPair], list[str]]:
    """Every later run's rows against the baseline (first) run's rows of the same dataset and loss."""
    base = runs[0]
    pairs, skipped = [], []
    for run in runs[1:]:
        for a in run.results.experiments:
            for b in base.results.experiments:
                if (a.dataset, a.loss) != (b.dataset, b.loss):
                    continue
                p, why = pair(run.label, a, base.label, b)
                if p is not None:
                    pairs.append(p)
                elif why:
                    skipped.append(why)
    return pairs, skipped


# --------------------------------------------------------------------------------------------- tables


def cross_table(runs: Sequence[Run]):
    from .cells import fmt_ci, fmt_median, fmt_seeds, notes
    from .export import Table, _Empty, few_seeds_note, summary_data

    pairs, skipped = cross_pairs(runs)
    table = Table(
        "cross-run", f"Paired per-seed differences across runs (each run against {runs[0].label}; same seed, "
                     f"same dataset, same loss)",
        ["a_run", "a", "b_run", "b", "shared_stages", *summary_data("pgr_diff", _Empty()), "wins", "seeds",
         *summary_data("transfer_acc_diff", _Empty())], [],
        ["comparison", "shared stages", "PGR difference mean [95% CI]", "median", "wins / seeds", "seeds used/run",
         "transfer acc difference mean [95% CI]"], [])
    for p in pairs:
        table.rows.append([p.a_run, p.a, p.b_run, p.b, p.shared, *summary_data("pgr_diff", p.pgr).values(),
                           p.pgr.wins, p.pgr.seeds, *summary_data("transfer_acc_diff", p.transfer_acc).values()])
        label = f"{p.a_run}: {p.a} - {p.b_run}: {p.b}"
        table.text_rows.append([label, p.shared, fmt_ci(p.pgr, signed=True), fmt_median(p.pgr, signed=True),
                                f"{p.pgr.wins} / {p.pgr.seeds}", fmt_seeds(p.pgr),
                                fmt_ci(p.transfer_acc, signed=True)])
        table.notes.extend(n for n in (notes(label, p.pgr, what="difference"),) if n)
    table.notes.extend(n for n in (few_seeds_note([(f"{p.a_run}: {p.a} - {p.b_run}: {p.b}", p.pgr) for p in pairs],
                                                  "difference"),) if n)
    if any(p.shared != "weak+ceiling" for p in pairs):
        table.notes.append("shared stages other than weak+ceiling: the two rows' PGRs are over different gaps "
                           "(another weak model, ceiling or split); the transfer acc difference is the cleaner "
                           "figure")
    table.notes.extend(skipped)
    if not pairs and not skipped:
        table.notes.append(f"no row of {', '.join(r.label for r in runs[1:])} has the dataset and loss of a row of "
                           f"{runs[0].label}: nothing to pair")
    return table


def run_comparisons_table(runs: Sequence[Run]):
    """Each run's own planned comparisons, labelled by run; ``None`` when no run has any."""
    from .export import Table, comparisons_table

    out = None
    for run in runs:
        t = comparisons_table(run.results)
        if t is None:
            continue
        if out is None:
            out = Table("comparisons", t.title + ", within each run", ["run"] + t.columns, [],
                        ["run"] + t.text_columns, [])
        out.rows += [[run.label] + r for r in t.rows]
        out.text_rows += [[run.label] + r for r in t.text_rows]
        out.notes += [f"{run.label}: {n}" for n in t.notes]
    return out


def compare_tables(runs: Sequence[Run], pm=None) -> list:
    """Every table ``w2s-harness compare`` shows, in order: all rows, rungs, each run's comparisons, the
    cross-run pairs, then each run's report-view tables (named after the run)."""
    from .export import rungs_table, summary_table, view_tables

    labelled = [(r.label, r.results) for r in runs]
    title = ("Weak-to-strong results of " + ", ".join(f"{r.label} ({r.results.status})" for r in runs)
             + "; PGR mean [95% bootstrap CI] and median over the seeds used")
    tables = [summary_table(labelled, title)]
    tables += [t for t in (rungs_table(labelled), run_comparisons_table(runs), cross_table(runs)) if t is not None]
    for run in runs:
        for t in view_tables(run.results, pm):
            t.name, t.title = f"{t.name}-{_file_safe(run.label)}", f"{run.label}: {t.title}"
            tables.append(t)
    return tables


def _file_safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in label)


def cmd_compare(args, pm, console) -> int:
    """``w2s-harness compare``: the tables as rich tables on stderr, or exported (``--format`` / ``--output``)."""
    from .export import check_export_args, write

    check_export_args(args)
    tables = compare_tables(load_runs(args.runs, args.label), pm)
    for p in write(tables, args.format, args.output, console):
        console.print(f"wrote {p}", markup=False, highlight=False, soft_wrap=True)
    return 0
