"""How results read as table cells: accuracies, PGR with its CI and median, seeds used, notes on left-out seeds,
and the analysis columns. One place for the screen (:mod:`.report`) and the exports (:mod:`.export`), so they
cannot disagree."""

from __future__ import annotations

from collections.abc import Sequence

from .._contracts.errors import ConfigError
from .results import ExperimentResult, Summary

#: Groups of analysis columns ``render`` adds (``w2s-harness report --metrics agreement,misfit,auroc``).
METRICS = ("agreement", "misfit", "auroc")

#: Per group: (column header, cell of a row).
ANALYSIS_COLUMNS = {
    "agreement": [
        ("agree\n(test)", lambda a: fmt_acc(a.agreement)),
        ("agree |\nweak right", lambda a: fmt_acc(a.agreement_weak_right)),
        ("agree |\nweak wrong", lambda a: fmt_acc(a.agreement_weak_wrong)),
    ],
    "misfit": [
        ("label acc\n(train2)", lambda a: fmt_acc(a.label_acc_train2)),
        ("misfit err\ntrain2/test", lambda a: f"{fmt_acc(a.misfit_err_train2)}/{fmt_acc(a.misfit_err_test)}"),
        ("misfit KL\ntrain2/test", lambda a: f"{fmt_acc(a.misfit_kl_train2)}/{fmt_acc(a.misfit_kl_test)}"),
        ("gain", lambda a: fmt_acc(a.gain, signed=True)),
    ],
    "auroc": [
        ("AUROC weak/\ntransfer/ceiling", lambda a: "/".join(
            fmt_acc(x) for x in (a.weak_auroc, a.transfer_auroc, a.ceiling_auroc))),
        ("PGR(AUROC)\nmean [95% CI]", lambda a: fmt_ci(a.pgr_auroc)),
    ],
}


def parse_metrics(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """The analysis column groups of a comma-separated list (``"agreement,misfit"``, ``"all"``); a one-line
    :class:`~w2s_harness.ConfigError` for an unknown name."""
    if not text:
        return ()
    names = [m.strip() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    if "all" in names:
        return METRICS
    bad = [m for m in names if m not in METRICS]
    if bad:
        raise ConfigError(f"--metrics: unknown {', '.join(repr(m) for m in bad)}; use a comma-separated list of "
                          f"{', '.join(METRICS)} (or all)")
    return tuple(dict.fromkeys(names))


def fmt_acc(summary: Summary, signed: bool = False) -> str:
    if summary.mean is None:
        return "-"
    return f"{summary.mean:{'+' if signed else ''}.3f}"


def fmt_ci(summary: Summary, signed: bool = False) -> str:
    """``mean [lo, hi]``; ``n/a: <why>`` where the summary says it does not apply, ``n/a`` with no value."""
    if summary.na:
        return f"n/a: {summary.na}"
    if summary.mean is None:
        return "n/a"
    sign = "+" if signed else ""
    text = f"{summary.mean:{sign}.3f}"
    if summary.ci95:
        lo, hi = summary.ci95
        text += f" [{lo:{sign}.2f}, {hi:{sign}.2f}]"
    return text


def fmt_median(summary: Summary, signed: bool = False) -> str:
    if summary.na or summary.median is None:
        return "-"
    return f"{summary.median:{'+' if signed else ''}.3f}"


def fmt_seeds(summary: Summary) -> str:
    """Seeds used / seeds run, e.g. ``9/10``."""
    return f"{summary.n}/{summary.n_run}"


def dropped_text(summary: Summary) -> str:
    """The dropped seeds grouped by reason: ``seed 3: ceiling 0.712 <= weak 0.720 (no gap to recover); seeds 5,
    7: not finished (transfer)``; empty when none was dropped."""
    groups: dict[str, list] = {}
    for d in summary.dropped:
        groups.setdefault(str(d.get("reason")), []).append(d.get("seed"))
    parts = []
    for reason, seeds in groups.items():
        label = "seed" if len(seeds) == 1 else "seeds"
        parts.append(f"{label} {', '.join(str(s) for s in seeds)}: {reason}")
    return "; ".join(parts)


def notes(name: str, summary: Summary, what: str = "PGR", detail: str | None = None) -> str | None:
    """One line on what ``summary`` leaves out (``None`` when it uses every seed and applies)."""
    if not summary.dropped and not summary.na:
        return None
    if summary.na:
        head = f"{name}: {what} n/a ({summary.na}{': ' + detail if detail else ''})"
    else:
        head = f"{name}: {what} over {summary.n} of {summary.n_run} seeds"
    dropped = dropped_text(summary)
    return head + (f"; dropped {dropped}" if dropped else "")


def analysis_cells(e: ExperimentResult, metrics: Sequence[str]) -> list[str]:
    cells = []
    for group in metrics:
        for _, cell in ANALYSIS_COLUMNS[group]:
            cells.append(cell(e.analysis) if e.analysis is not None else "-")
    return cells


def oracle_note(e: ExperimentResult) -> str | None:
    """The line under the table for a row whose transfer selected its checkpoint on ground truth."""
    if not e.oracle:
        return None
    return (f'{e.name}: the transfer is early-stopped on ground-truth validation labels (early_stop = "gt_val"): '
            f"an oracle, not a weak-to-strong result")
