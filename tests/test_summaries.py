"""Honest summaries: every PGR figure says how many seeds it is over, shows mean *and* median with the CI, names
the seeds it drops and why, and a row with no gap to recover prints ``n/a`` instead of a number.

Most cases build a :class:`Plan` and its :class:`StageRecord` s by hand (the accuracies a run would have
measured) and run the real ``assemble`` -> ``results.json`` -> ``render`` path on them; the last ones are tiny
real runs (hashed bag-of-words models on a small CSV) for a weak model above its ceiling and a partial run.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from rich.console import Console
from toy_hash import ToyHash, majority_words_csv

from w2s_harness import Results, RunConfig, Summary, hookimpl
from w2s_harness._cli.cli import main
from w2s_harness._engine.stage import StageRecord
from w2s_harness._plan.planner import Comparison, Experiment, Plan, Stage, StageKind, StageRef
from w2s_harness._results.assemble import assemble
from w2s_harness._results.stats import NO_GAP, NO_GAP_ON_MEAN, bootstrap_ci

NOT_FINISHED = object()  # an accuracy whose stage did not finish

# ---------------------------------------------------------------------------------------------- helpers


def build(rows: dict[str, dict[int, tuple]], comparisons=(), status: str = "complete") -> Results:
    """Results of a hand-made plan. ``rows``: name -> {seed: (weak, ceiling, transfer) test accuracies}; an
    accuracy of ``NOT_FINISHED`` leaves that stage without a record. Rows with equal weak/ceiling accuracies on a
    seed share those stages, as the reference protocol's rows do."""
    seeds = sorted({s for per_seed in rows.values() for s in per_seed})
    stages, records, experiments = {}, {}, {s: [] for s in seeds}

    def stage(key: str, kind: StageKind, seed: int, acc) -> StageRef:
        sid = f"{kind.value}-{seed}-{key}"
        stages.setdefault(sid, Stage(sid, "train", kind, key, {}, (), seed))
        if acc is not NOT_FINISHED:
            records[sid] = StageRecord(sid, "train", kind.value, key, seed, {}, {"test_acc": acc}, 0.1, False)
        return StageRef(sid, "train", key)

    for name, per_seed in rows.items():
        for seed, (w, c, t) in per_seed.items():
            experiments[seed].append(Experiment(
                name=name, strategy=name.split("/")[0], loss=name.split("/")[1],
                weak=stage(f"weak={w}", StageKind.TRAIN_WEAK, seed, w),
                ceiling=stage(f"ceiling={c}", StageKind.TRAIN_CEILING, seed, c),
                transfer=stage(f"transfer[{name}]", StageKind.TRAIN_TRANSFER, seed, t),
                weak_model="weak-m", strong_model="strong-m"))
    plan = Plan(list(stages.values()), experiments, [Comparison(a, b) for a, b in comparisons])
    return assemble(RunConfig.default(), plan, records, status, {}, {})


def round_trip(results: Results) -> dict:
    """results.json as a reader sees it. Its summaries are strict JSON: a NaN accuracy is dropped, not stored
    (a stage's own ``metrics`` keep what it measured)."""
    doc = json.loads(results.to_json())
    json.dumps([doc["experiments"], doc["comparisons"]], allow_nan=False)
    return doc


def render_text(results: Results) -> str:
    from w2s_harness._results.report import render

    console = Console(file=io.StringIO(), width=240, record=True, color_system=None, highlight=False)
    render(results, console)
    return console.export_text()


def tables(text: str) -> list[list[dict[str, str]]]:
    """The rendered tables as rows of ``{column header: cell}`` (rich's heavy-head box: ``┃`` header, ``│`` body)."""
    out, header = [], None
    for line in text.splitlines():
        if line.startswith("┃"):
            header = [c.strip() for c in line.strip("┃").split("┃")]
            out.append([])
        elif line.startswith("│") and header:
            out[-1].append(dict(zip(header, (c.strip() for c in line.strip("│").split("│")))))
    return out


def pgr_values(weak, ceiling, values):
    """Transfer accuracies that give these PGRs."""
    return [weak + p * (ceiling - weak) for p in values]


# ------------------------------------------------------------------ mean != median, a dropped seed, counts

SKEWED = [0.1, 0.2, 0.3, 0.9, 1.0]  # mean 0.5, median 0.3


@pytest.fixture
def skewed() -> Results:
    """Five seeds with PGR 0.1 .. 1.0 (mean 0.5, median 0.3) and a sixth whose ceiling is below the weak model."""
    per_seed = {s: (0.70, 0.80, t) for s, t in enumerate(pgr_values(0.70, 0.80, SKEWED))}
    per_seed[5] = (0.720, 0.712, 0.75)
    return build({"naive/xent": per_seed})


def test_summary_mean_differs_from_median_and_names_the_dropped_seed(skewed):
    pgr = skewed.experiment("naive/xent").pgr
    assert pgr.mean == pytest.approx(0.5) and pgr.median == pytest.approx(0.3)
    assert pgr.per_seed[:5] == pytest.approx(SKEWED) and pgr.per_seed[5] is None
    assert (pgr.n, pgr.n_run) == (5, 6)
    assert pgr.dropped == [{"seed": 5, "reason": "ceiling 0.712 <= weak 0.720 (no gap to recover)"}]
    assert pgr.na is None
    assert pgr.ci95 == pytest.approx(bootstrap_ci(SKEWED))  # the CI is over the five used seeds only
    # the accuracies themselves are over all six seeds
    acc = skewed.experiment("naive/xent").weak_acc
    assert (acc.n, acc.n_run, acc.dropped) == (6, 6, [])


def test_results_json_carries_median_counts_and_dropped(skewed):
    pgr = round_trip(skewed)["experiments"][0]["pgr"]
    assert pgr["mean"] == pytest.approx(0.5) and pgr["median"] == pytest.approx(0.3)
    assert (pgr["n"], pgr["n_run"], pgr["na"]) == (5, 6, None)
    assert pgr["dropped"] == [{"seed": 5, "reason": "ceiling 0.712 <= weak 0.720 (no gap to recover)"}]
    again = Results.from_dict(round_trip(skewed))
    assert again.experiments == skewed.experiments


def test_table_shows_mean_ci_median_seeds_and_the_dropped_seed(skewed):
    text = render_text(skewed)
    assert "6 seeds run" in text
    (row,) = tables(text)[0]
    lo, hi = skewed.experiment("naive/xent").pgr.ci95
    assert row["PGR mean [95% CI]"] == f"0.500 [{lo:.2f}, {hi:.2f}]"
    assert row["PGR median"] == "0.300"
    assert row["seeds used/run"] == "5/6"
    assert "naive/xent: PGR over 5 of 6 seeds; dropped seed 5: ceiling 0.712 <= weak 0.720 (no gap to recover)" in text


# ----------------------------------------------------------------------------------- weak >= ceiling: n/a


def test_weak_at_or_above_ceiling_on_every_seed_is_na():
    res = build({"naive/xent": {0: (0.80, 0.75, 0.78), 1: (0.80, 0.80, 0.79), 2: (0.81, 0.76, 0.80)}})
    pgr = res.experiment("naive/xent").pgr
    assert pgr.na == NO_GAP and pgr.mean is None and pgr.median is None and (pgr.n, pgr.n_run) == (0, 3)
    assert [d["seed"] for d in pgr.dropped] == [0, 1, 2]
    assert pgr.dropped[1]["reason"] == "ceiling 0.800 <= weak 0.800 (no gap to recover)"
    assert round_trip(res)["experiments"][0]["pgr"]["na"] == "weak >= ceiling"
    text = render_text(res)
    (row,) = tables(text)[0]
    assert row["PGR mean [95% CI]"] == "n/a: weak >= ceiling"
    assert row["PGR median"] == "-" and row["seeds used/run"] == "0/3"
    assert "naive/xent: PGR n/a (weak >= ceiling: mean weak acc 0.803, mean ceiling acc 0.770)" in text
    assert "seed 0: ceiling 0.750 <= weak 0.800 (no gap to recover)" in text


def test_weak_above_ceiling_on_the_mean_is_na_though_some_seeds_have_a_gap():
    # seed 0 has a gap (PGR 0.6), seeds 1 and 2 do not; on the mean the weak model is above the ceiling
    res = build({"naive/xent": {0: (0.70, 0.75, 0.73), 1: (0.80, 0.76, 0.79), 2: (0.80, 0.77, 0.78)}})
    pgr = res.experiment("naive/xent").pgr
    assert pgr.na == NO_GAP_ON_MEAN
    assert pgr.mean == pytest.approx(0.6) and (pgr.n, pgr.n_run) == (1, 3)  # kept in results.json, not quoted
    (row,) = tables(render_text(res))[0]
    assert row["PGR mean [95% CI]"] == "n/a: weak >= ceiling on the mean"
    assert row["PGR median"] == "-" and row["seeds used/run"] == "1/3"
    assert "0.600" not in row.values()


def test_small_gap_on_the_mean_is_reported():
    res = build({"naive/xent": {0: (0.70, 0.75, 0.72), 1: (0.80, 0.79, 0.79), 2: (0.70, 0.74, 0.71)}})
    pgr = res.experiment("naive/xent").pgr
    assert pgr.na is None and (pgr.n, pgr.n_run) == (2, 3)
    assert pgr.mean == pytest.approx(np.mean([0.4, 0.25]))


# ------------------------------------------------------------------------------- partial runs and NaN


def test_unfinished_stages_and_nan_accuracy_are_named():
    res = build({"naive/xent": {0: (0.70, 0.80, 0.75), 1: (0.70, 0.80, NOT_FINISHED),
                                2: (math.nan, 0.80, 0.75), 3: (NOT_FINISHED, NOT_FINISHED, NOT_FINISHED)}},
                status="partial")
    e = res.experiment("naive/xent")
    assert e.pgr.dropped == [{"seed": 1, "reason": "not finished (transfer)"},
                             {"seed": 2, "reason": "NaN accuracy (weak)"},
                             {"seed": 3, "reason": "not finished (weak, ceiling, transfer)"}]
    assert (e.pgr.n, e.pgr.n_run) == (1, 4) and e.pgr.mean == pytest.approx(0.5) and e.pgr.na is None
    # a NaN accuracy leaves the mean (it is not NaN) and is named; results.json stays strict JSON
    assert e.weak_acc.mean == pytest.approx(0.70) and e.weak_acc.per_seed[2] is None
    assert e.weak_acc.dropped == [{"seed": 2, "reason": "NaN accuracy"}, {"seed": 3, "reason": "not finished"}]
    assert e.transfer_acc.dropped == [{"seed": 1, "reason": "not finished"}, {"seed": 3, "reason": "not finished"}]
    round_trip(res)
    text = render_text(res)
    assert "Weak-to-strong results (partial, 4 seeds run;" in text
    (row,) = tables(text)[0]
    assert row["seeds used/run"] == "1/4" and row["PGR mean [95% CI]"] == "0.500" and row["PGR median"] == "0.500"
    assert ("naive/xent: PGR over 1 of 4 seeds; dropped seed 1: not finished (transfer); seed 2: NaN accuracy "
            "(weak); seed 3: not finished (weak, ceiling, transfer)") in text


def test_nothing_finished_shows_na_and_every_seed():
    res = build({"naive/xent": {s: (NOT_FINISHED,) * 3 for s in range(3)}}, status="failed")
    (row,) = tables(render_text(res))[0]
    assert row["PGR mean [95% CI]"] == "n/a" and row["PGR median"] == "-" and row["seeds used/run"] == "0/3"
    assert "seeds 0, 1, 2: not finished (weak, ceiling, transfer)" in render_text(res)


# -------------------------------------------------------------------------------------------- comparisons


@pytest.fixture
def compared() -> Results:
    """logconf vs xent over 6 seeds: seed 4 has no gap (both rows drop it), seed 5's logconf transfer did not
    finish. Differences on the four used seeds: +0.1, +0.1, +0.1, -0.5 (mean -0.05, median +0.1)."""
    xent = dict(enumerate(pgr_values(0.70, 0.80, [0.2, 0.3, 0.4, 0.9, 0.0, 0.5])))
    logc = dict(enumerate(pgr_values(0.70, 0.80, [0.3, 0.4, 0.5, 0.4, 0.0, 0.0])))
    rows = {"naive/xent": {s: (0.70, 0.80, t) for s, t in xent.items()},
            "naive/logconf": {s: (0.70, 0.80, t) for s, t in logc.items()}}
    for per_seed in rows.values():
        per_seed[4] = (0.75, 0.74, 0.74)
    rows["naive/logconf"][5] = (0.70, 0.80, NOT_FINISHED)
    return build(rows, comparisons=[("naive/logconf", "naive/xent")], status="partial")


def test_comparison_names_its_dropped_seeds(compared):
    (c,) = compared.comparisons
    assert (c.n, c.n_run, c.seeds, c.wins) == (4, 6, 4, 3)
    assert c.mean == pytest.approx(-0.05) and c.median == pytest.approx(0.1)
    assert c.per_seed == pytest.approx([0.1, 0.1, 0.1, -0.5])
    assert c.dropped == [{"seed": 4, "reason": "ceiling 0.740 <= weak 0.750 (no gap to recover)"},
                         {"seed": 5, "reason": "naive/logconf: not finished (transfer)"}]
    assert c.na is None
    d = round_trip(compared)["comparisons"][0]
    assert (d["n"], d["n_run"], d["median"]) == (4, 6, pytest.approx(0.1))
    assert d["dropped"] == c.dropped


def test_comparison_table_shows_median_counts_and_dropped(compared):
    text = render_text(compared)
    (row,) = tables(text)[1]
    lo, hi = compared.comparisons[0].ci95
    assert row["comparison"] == "naive/logconf - naive/xent"
    assert row["PGR difference mean [95% CI]"] == f"-0.050 [{lo:+.2f}, {hi:+.2f}]"
    assert row["median"] == "+0.100" and row["wins / seeds"] == "3 / 4" and row["seeds used/run"] == "4/6"
    assert ("naive/logconf - naive/xent: difference over 4 of 6 seeds; dropped seed 4: ceiling 0.740 <= weak "
            "0.750 (no gap to recover); seed 5: naive/logconf: not finished (transfer)") in text


def test_comparison_of_rows_without_a_gap_is_na():
    rows = {name: {s: (0.80, 0.75, 0.78) for s in range(2)} for name in ("naive/xent", "naive/logconf")}
    res = build(rows, comparisons=[("naive/logconf", "naive/xent")])
    (c,) = res.comparisons
    assert c.na == NO_GAP and (c.n, c.n_run) == (0, 2)
    (row,) = tables(render_text(res))[1]
    assert row["PGR difference mean [95% CI]"] == "n/a: weak >= ceiling" and row["seeds used/run"] == "0/2"


# ------------------------------------------------------------------------------- reading older files


def _strip_new_fields(doc: dict) -> dict:
    """A results.json as written before n_run / dropped / na existed (per_seed, n, mean... only)."""
    def strip(summary):
        for key in ("n_run", "dropped", "na"):
            summary.pop(key, None)

    for e in doc["experiments"]:
        for key in ("weak_acc", "ceiling_acc", "transfer_acc", "pgr"):
            strip(e[key])
        for r in e["rung_acc"]:
            strip(r["acc"])
    for c in doc["comparisons"]:
        strip(c)
    return doc


def test_older_results_json_reads_and_gets_counts_and_reasons(compared):
    old = Results.from_dict(_strip_new_fields(round_trip(compared)))
    assert old.experiments == compared.experiments
    assert old.comparisons == compared.comparisons
    assert render_text(old) == render_text(compared)


def test_older_results_json_without_gap_gets_na():
    res = build({"naive/xent": {0: (0.80, 0.75, 0.78), 1: (0.80, 0.70, 0.79)}})
    old = Results.from_dict(_strip_new_fields(round_trip(res)))
    assert old.experiment("naive/xent").pgr.na == NO_GAP
    assert old.experiment("naive/xent").pgr.dropped == res.experiment("naive/xent").pgr.dropped


def test_summary_defaults_for_direct_construction():
    s = Summary(0.3, 0.3, None, [0.3, None], 1)
    assert s.n_run == 2 and s.dropped == [] and s.na is None
    of = Summary.of([0.3, None, float("nan")], seeds=[7, 8, 9], reasons=[None, "not finished", None])
    assert of.dropped == [{"seed": 8, "reason": "not finished"}, {"seed": 9, "reason": "NaN"}]
    assert (of.n, of.n_run, of.mean) == (1, 3, 0.3)


# ------------------------------------------------------------------------------------- tiny real runs


class DivergingLoss:
    """Soft cross-entropy that turns NaN halfway through training."""

    def __call__(self, logits, targets, step_frac=0.0):
        import torch

        loss = -(targets * torch.log_softmax(logits.float(), dim=-1)).sum(-1).mean()
        return loss * float("nan") if step_frac > 0.5 else loss


class ToyPlugin:
    @hookimpl
    def w2s_register_models(self, registry):
        registry.add("toy-hash", ToyHash, description="hashed bag of words (tests)")

    @hookimpl
    def w2s_register_losses(self, registry):
        registry.add("diverging", DivergingLoss, description="NaN after half of training (test)")


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
    return majority_words_csv(tmp_path_factory.mktemp("data") / "tiny.csv", 300)


def _run(csv_path, out, *, weak_dim: int, strong_dim: int, loss: str, seeds: str = "0,1") -> int:
    return main(["run", "--dataset", "local", "--set", f'dataset.path="{csv_path}"', "--set", "dataset.n_test=100",
                 "--weak", "toy-hash", "--set", f"weak.dim={weak_dim}", "--strong", "toy-hash",
                 "--set", f"strong.dim={strong_dim}", "--loss", loss, "--seeds", seeds, "--output-dir", str(out)],
                plugins=[ToyPlugin()])


def test_real_run_with_the_weak_model_above_its_ceiling(csv_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "240")
    # the "weak" model has 64x the buckets of the "strong" one: the ceiling is below it on every seed
    assert _run(csv_path, tmp_path / "inv", weak_dim=256, strong_dim=4, loss="xent,logconf") == 0
    err = capsys.readouterr().err
    doc = json.loads((tmp_path / "inv" / "results.json").read_text())
    for e in doc["experiments"]:
        w, c = e["weak_acc"]["per_seed"], e["ceiling_acc"]["per_seed"]
        assert all(ci <= wi for wi, ci in zip(w, c)), (w, c)
        assert e["pgr"]["na"] == "weak >= ceiling" and (e["pgr"]["n"], e["pgr"]["n_run"]) == (0, 2)
        assert e["pgr"]["dropped"] == [{"seed": s, "reason": f"ceiling {ci:.3f} <= weak {wi:.3f} (no gap to recover)"}
                                       for s, wi, ci in zip(e["seeds"], w, c)]
    main_table, comparisons = tables(err)
    assert [r["PGR mean [95% CI]"] for r in main_table] == ["n/a: weak >= ceiling"] * 2
    assert [r["seeds used/run"] for r in main_table] == ["0/2"] * 2
    assert comparisons[0]["PGR difference mean [95% CI]"] == "n/a: weak >= ceiling"
    # report re-renders the same table from results.json, and the PGR plot copes with a row without bars
    assert main(["report", str(tmp_path / "inv")]) == 0
    again = capsys.readouterr().err
    assert tables(again) == [main_table, comparisons]
    assert (tmp_path / "inv" / "pgr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_real_partial_run_names_the_unfinished_seeds(csv_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "240")
    assert _run(csv_path, tmp_path / "part", weak_dim=4, strong_dim=256, loss="diverging", seeds="0,1") == 2
    err = capsys.readouterr().err
    doc = json.loads((tmp_path / "part" / "results.json").read_text())
    assert doc["status"] == "partial"
    (e,) = doc["experiments"]
    assert (e["pgr"]["n"], e["pgr"]["n_run"], e["pgr"]["mean"]) == (0, 2, None)
    assert {d["seed"] for d in e["pgr"]["dropped"]} == {0, 1}
    assert all(d["reason"].startswith("not finished (") and "transfer" in d["reason"] for d in e["pgr"]["dropped"])
    assert e["transfer_acc"]["dropped"] == [{"seed": 0, "reason": "not finished"}, {"seed": 1, "reason": "not finished"}]
    assert main(["report", str(tmp_path / "part"), "--no-plots"]) == 0
    text = capsys.readouterr().err
    (row,) = tables(text)[0]
    assert row["PGR mean [95% CI]"] == "n/a" and row["seeds used/run"] == "0/2"
    assert "Weak-to-strong results (partial, 2 seeds run;" in text
    assert "naive/diverging: PGR over 0 of 2 seeds; dropped seed" in text and "not finished (" in text
    assert "error:" in err  # the run itself stopped with a one-line error; report shows what finished
