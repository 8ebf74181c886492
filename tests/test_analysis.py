"""Why it generalised: agreement, misfit, AUROC and PGR on AUROC (w2s_harness._results.analysis, assembled per row),
training curves and early stopping (w2s_harness._engine.training.fit, op_train), and ``report --metrics``.

The metrics are checked on small hand-computed cases, through the real ``assemble`` on hand-made stage arrays;
curves, plots and early stopping in tiny real runs (``local`` CSV, real heads).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from test_pipeline import write_config
from toy_hash import ToyHash

from w2s_harness import ConfigError, RunConfig, check_train_config, hookimpl, zero_linear_head
from w2s_harness._cli.cli import main
from w2s_harness._contracts.components import Splits, TrainConfig
from w2s_harness._engine.stage import StageRecord
from w2s_harness._engine.training import fit, predict_proba, validation_split
from w2s_harness._plan.planner import Experiment, Plan, StageRef
from w2s_harness._results.analysis import (
    agreement,
    agreement_split,
    auroc,
    binary_auroc,
    kl_rows,
    lookup,
    misfit,
)
from w2s_harness._results.assemble import assemble
from w2s_harness._results.cells import parse_metrics
from w2s_harness._results.report import render
from w2s_harness._results.results import Results
from w2s_harness._results.stats import NO_GAP, pgr_per_seed

pytestmark = pytest.mark.usefixtures("one_thread")


def onehot_probs(classes, confidence=0.8, k=2):
    """Rows putting ``confidence`` on the given class and the rest evenly on the others."""
    out = np.full((len(classes), k), (1 - confidence) / (k - 1))
    out[np.arange(len(classes)), classes] = confidence
    return out


# ------------------------------------------------------------------------------------------- metrics


def test_agreement_split_by_whether_the_weak_model_is_right():
    labels = np.array([1, 1, 1, 0, 0, 0])
    weak = onehot_probs([1, 1, 0, 0, 1, 1])  # right on rows 0, 1, 3; wrong on 2, 4, 5
    student = onehot_probs([1, 0, 1, 0, 1, 0])
    assert agreement(student, weak) == pytest.approx(3 / 6)
    split = agreement_split(student, weak, labels)
    assert split == pytest.approx({"all": 0.5, "weak_right": 2 / 3, "weak_wrong": 1 / 3})
    # class ids work as well as probabilities; an empty part is None
    assert agreement_split(np.array([0, 1]), np.array([0, 1]), np.array([0, 1])) == {
        "all": 1.0, "weak_right": 1.0, "weak_wrong": None}


def test_misfit_error_and_kl_by_hand():
    supervisor = np.array([[0.5, 0.5], [0.9, 0.1], [0.0, 1.0]])
    student = np.array([[0.25, 0.75], [0.6, 0.4], [0.5, 0.5]])
    kl = [0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75),
          0.9 * math.log(0.9 / 0.6) + 0.1 * math.log(0.1 / 0.4),
          1.0 * math.log(1.0 / 0.5)]  # the zero-probability class contributes nothing
    np.testing.assert_allclose(kl_rows(supervisor, student), kl)
    got = misfit(student, supervisor)
    # argmax: supervisor 0 (tie -> first), 0, 1; student 1, 0, 0
    assert got["err"] == pytest.approx(2 / 3)
    assert got["kl"] == pytest.approx(np.mean(kl))
    assert misfit(np.zeros((0, 2)), np.zeros((0, 2))) == {"err": None, "kl": None}


def test_binary_auroc_counts_ties_as_half_by_hand():
    # positives score 0.4 and 0.8, negatives 0.1 and 0.4: pairs won 1 + 0.5 (the tie) + 1 + 1 = 3.5 of 4
    assert binary_auroc([0.1, 0.4, 0.4, 0.8], [False, False, True, True]) == pytest.approx(0.875)
    assert binary_auroc([0.3, 0.3, 0.3], [True, False, True]) == pytest.approx(0.5)  # all tied
    assert binary_auroc([0.1, 0.2], [True, True]) is None  # one class: undefined
    assert auroc(onehot_probs([0, 1]), np.array([1, 1])) is None


def test_auroc_matches_scikit_learn_with_ties_binary_and_one_vs_rest():
    rng = np.random.default_rng(0)
    y2 = rng.integers(0, 2, 200)
    p1 = np.round(rng.random(200), 1)  # many ties
    p2 = np.stack([1 - p1, p1], axis=1)
    y3 = rng.integers(0, 3, 300)
    logits = np.round(rng.normal(size=(300, 3)) + 0.8 * np.eye(3)[y3], 1)
    p3 = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError:  # pragma: no cover - hand values of the same draws
        expected2, expected3 = None, None
    else:
        expected2 = roc_auc_score(y2, p1)
        expected3 = roc_auc_score(y3, p3, multi_class="ovr", average="macro")
    if expected2 is None:  # pragma: no cover
        pytest.skip("scikit-learn is not installed; the hand cases above cover ties")
    assert auroc(p2, y2) == pytest.approx(expected2, abs=1e-12)
    assert auroc(p3, y3) == pytest.approx(expected3, abs=1e-12)
    assert auroc(p2, np.eye(2)[y2]) == pytest.approx(expected2)  # one-hot labels read as class ids


def test_pgr_on_auroc_with_a_negative_gap_is_dropped_with_its_reason():
    values, reasons = pgr_per_seed([0.8, 0.6], [0.7, 0.9], [0.75, 0.5], metric="AUROC")
    assert values[0] is None and reasons[0] == "ceiling 0.700 <= weak 0.800 (no gap to recover)"
    assert values[1] == pytest.approx((0.5 - 0.6) / (0.9 - 0.6))  # a transfer below the weak model: negative
    values, reasons = pgr_per_seed([0.8], [0.9], [float("nan")], metric="AUROC")
    assert values == [None] and reasons == ["NaN AUROC (transfer)"]


def test_lookup_finds_rows_through_indices_and_rejects_missing_ones():
    table = {"indices": np.array([7, 3, 5]), "probs": np.array([[0.7], [0.3], [0.5]])}
    np.testing.assert_array_equal(lookup(table, [5, 7]), [[0.5], [0.7]])
    with pytest.raises(KeyError):
        lookup(table, [4])


# ------------------------------------------------------------------------------ assembled per row


class FakeDataset:
    """Rows 0-3 train1, 4-7 train2, 8-13 test."""

    name = "fake"

    def __init__(self):
        self.labels = np.array([0, 1, 0, 1, 0, 1, 0, 1, 1, 1, 1, 0, 0, 0])

    def load(self):
        return self

    def splits(self, seed):
        return Splits(np.arange(0, 4), np.arange(4, 8), np.arange(8, 14))


def _hand_run():
    """Two seeds of one naive row on :class:`FakeDataset` with hand-made predictions (the same on both seeds)."""
    every = np.arange(14)
    weak = onehot_probs([0, 1, 0, 1] + [0, 1, 1, 1] + [1, 1, 0, 0, 1, 1])
    transfer = onehot_probs([0, 1, 0, 1] + [0, 1, 1, 0] + [1, 0, 1, 0, 1, 0], confidence=0.7)
    ceiling = onehot_probs(list(FakeDataset().labels))
    aurocs = {0: (0.8, 0.7, 0.75), 1: (0.6, 0.9, 0.5)}  # (weak, ceiling, transfer) test AUROC per seed
    records, arrays, experiments = {}, {}, {}
    for seed in (0, 1):
        ids = {role: f"{role}{seed}" for role in ("weak", "labels", "ceiling", "transfer")}
        arrays[ids["weak"]] = {"indices": every, "probs": weak}
        arrays[ids["labels"]] = {"indices": np.arange(4, 8), "probs": weak[4:8]}
        arrays[ids["ceiling"]] = {"indices": every, "probs": ceiling}
        arrays[ids["transfer"]] = {"indices": every, "probs": transfer}
        for role, acc, au in (("weak", 0.5, aurocs[seed][0]), ("ceiling", 1.0, aurocs[seed][1]),
                              ("transfer", 4 / 6, aurocs[seed][2])):
            spec = {"labels": "gt", "on": {"split": "train1" if role == "weak" else "train2"}}
            if role == "transfer":
                spec = {"labels": "soft", "deps": [ids["labels"]],
                        "on": {"split": "train2", "part": 0, "parts": 1, "complement": False}}
            records[ids[role]] = StageRecord(ids[role], "train", f"train_{role}", role, seed, spec,
                                             {"test_acc": acc, "test_auroc": au})
        records[ids["labels"]] = StageRecord(ids["labels"], "label", "label", "weak labels", seed, {}, {"n": 4})
        refs = {role: StageRef(ids[role], "train", role) for role in ("weak", "ceiling", "transfer")}
        experiments[seed] = [Experiment("naive/xent", "naive", "xent", refs["weak"], refs["ceiling"],
                                        refs["transfer"], weak_model="w", strong_model="s")]
    plan = Plan([], experiments, dataset=FakeDataset())
    return plan, records, arrays


def test_assembled_analysis_on_hand_computed_arrays():
    plan, records, arrays = _hand_run()
    res = assemble(RunConfig.default(), plan, records, "complete", {}, {}, arrays=arrays)
    a = res.experiments[0].analysis
    # test rows: labels 1 1 1 0 0 0; weak 1 1 0 0 1 1 (right on 3); transfer 1 0 1 0 1 0
    assert a.agreement.per_seed == pytest.approx([0.5, 0.5])
    assert a.agreement_weak_right.mean == pytest.approx(2 / 3)
    assert a.agreement_weak_wrong.mean == pytest.approx(1 / 3)
    assert a.misfit_err_test.mean == pytest.approx(0.5)
    kl_test = np.mean(kl_rows(onehot_probs([1, 1, 0, 0, 1, 1]), onehot_probs([1, 0, 1, 0, 1, 0], 0.7)))
    assert a.misfit_kl_test.mean == pytest.approx(kl_test)
    # train2: labels 0 1 0 1; weak labels 0 1 1 1 (3 of 4 right); transfer 0 1 1 0 (differs on the last row)
    assert a.label_acc_train2.mean == pytest.approx(0.75)
    assert a.misfit_err_train2.mean == pytest.approx(0.25)
    kl_train = np.mean(kl_rows(onehot_probs([0, 1, 1, 1]), onehot_probs([0, 1, 1, 0], 0.7)))
    assert a.misfit_kl_train2.mean == pytest.approx(kl_train)
    assert a.gain.per_seed == pytest.approx([4 / 6 - 0.5] * 2)
    assert [p["seed"] for p in a.gain_misfit] == [0, 1]
    assert a.gain_misfit[0]["gain"] == pytest.approx(1 / 6) and a.gain_misfit[0]["misfit_err_test"] == 0.5
    # PGR on AUROC: seed 0 has a negative gap (dropped, named), seed 1 a negative PGR
    assert a.pgr_auroc.per_seed[0] is None and a.pgr_auroc.per_seed[1] == pytest.approx(-1 / 3)
    assert a.pgr_auroc.dropped == [{"seed": 0, "reason": "ceiling 0.700 <= weak 0.800 (no gap to recover)"}]
    assert a.pgr_auroc.na is None  # the mean ceiling AUROC (0.8) is above the mean weak AUROC (0.7)
    assert a.weak_auroc.per_seed == [0.8, 0.6]
    assert res.experiments[0].stage_ids == {"weak": ["weak0", "weak1"], "ceiling": ["ceiling0", "ceiling1"],
                                            "transfer": ["transfer0", "transfer1"]}
    # the JSON round trip keeps every field; a file from before the analysis still loads (analysis None)
    again = Results.from_dict(json.loads(res.to_json()))
    assert again.experiments[0] == res.experiments[0]
    old = json.loads(res.to_json())
    for e in old["experiments"]:
        for key in ("analysis", "stage_ids", "early_stop"):
            e.pop(key)
    assert Results.from_dict(old).experiments[0].analysis is None


def test_pgr_auroc_is_na_when_the_ceiling_auroc_is_never_above_the_weak_one():
    plan, records, arrays = _hand_run()
    records["ceiling1"].metrics["test_auroc"] = 0.55
    a = assemble(RunConfig.default(), plan, records, "complete", {}, {}, arrays=arrays).experiments[0].analysis
    assert a.pgr_auroc.na == NO_GAP and a.pgr_auroc.n == 0


def test_analysis_auroc_falls_back_to_the_arrays_and_unfinished_stages_are_named():
    plan, records, arrays = _hand_run()
    del records["weak1"].metrics["test_auroc"]
    records["transfer0"].metrics = None  # not finished
    a = assemble(RunConfig.default(), plan, records, "partial", {}, {}, arrays=arrays).experiments[0].analysis
    weak_test = onehot_probs([1, 1, 0, 0, 1, 1])
    assert a.weak_auroc.per_seed[1] == pytest.approx(auroc(weak_test, np.array([1, 1, 1, 0, 0, 0])))
    assert a.agreement.dropped == [{"seed": 0, "reason": "not finished (transfer)"}]
    assert a.transfer_auroc.dropped == [{"seed": 0, "reason": "not finished"}]


def test_report_metrics_flag_parses_and_renders_columns():
    from rich.console import Console

    assert parse_metrics("agreement, auroc") == ("agreement", "auroc")
    assert parse_metrics("all") == ("agreement", "misfit", "auroc")
    assert parse_metrics(None) == ()
    with pytest.raises(ConfigError, match=r"unknown 'agreemnt'.*agreement, misfit, auroc") as e:
        parse_metrics("agreemnt")
    assert "\n" not in str(e.value)
    plan, records, arrays = _hand_run()
    res = assemble(RunConfig.default(), plan, records, "complete", {}, {}, arrays=arrays)
    console = Console(record=True, width=200)
    render(res, console, metrics=("agreement", "misfit", "auroc"))
    text = console.export_text()
    assert "Why it generalised" in text and "weak wrong" in text and "misfit KL" in text
    assert "0.500/0.500" not in text and "0.250/0.500" in text  # misfit error train2/test
    assert "PGR(AUROC) over 1 of 2 seeds; dropped seed 0: ceiling 0.700 <= weak 0.800" in text
    console = Console(record=True, width=200)
    render(res, console)
    assert "Why it generalised" not in console.export_text()  # the default table is unchanged


# ------------------------------------------------------------------------------- curves in fit()


def separable(n=240, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    return x, y, np.eye(2, dtype=np.float32)[y]


def xent(logits, targets, step_frac=0.0):
    return -(targets * torch.log_softmax(logits, dim=-1)).sum(-1).mean()


def test_fit_records_a_curve_per_epoch_or_every_n_steps_without_changing_the_model():
    x, y, t = separable()
    per_epoch = TrainConfig(lr=0.05, epochs=3, batch_size=32)  # 160 rows: 5 steps per epoch
    head_a = zero_linear_head(4, 2)
    out = fit(head_a, x[:160], t[:160], xent, per_epoch, seed=0, device="cpu", eval_inputs=x[160:],
              eval_labels=y[160:])
    curve = out["curve"]
    assert [p["step"] for p in curve] == [5, 10, 15] and [p["epoch"] for p in curve] == [1.0, 2.0, 3.0]
    assert [p["test_acc"] for p in curve] == out["epoch_test_acc"]  # the per-epoch evaluation, reused
    assert curve[-1]["train_loss"] == pytest.approx(out["final_train_loss"], rel=1e-6)
    assert all(0 <= p["agreement"] <= 1 for p in curve) and curve[-1]["agreement"] >= 0.85  # ground truth
    assert "early_stop" not in out

    head_b = zero_linear_head(4, 2)
    every = TrainConfig(lr=0.05, epochs=3, batch_size=32, curve_every=4)
    out_b = fit(head_b, x[:160], t[:160], xent, every, seed=0, device="cpu", eval_inputs=x[160:],
                eval_labels=y[160:])
    assert [p["step"] for p in out_b["curve"]] == [4, 8, 12, 15]  # every 4 steps and at the end
    assert out_b["curve"][1]["epoch"] == pytest.approx(8 / 5)
    # the extra evaluations never change training
    np.testing.assert_array_equal(predict_proba(head_a, x, device="cpu"), predict_proba(head_b, x, device="cpu"))
    # the loss since the last point: steps 13-15 of the last epoch
    assert out_b["curve"][-1]["train_loss"] > 0


def test_curve_agreement_uses_the_training_targets():
    x, y, t = separable()
    flipped = t[:, ::-1].copy()  # train on the opposite labels: agreement with them rises, test accuracy falls
    out = fit(zero_linear_head(4, 2), x[:160], flipped[:160], xent, TrainConfig(lr=0.05, epochs=3), seed=0,
              device="cpu", eval_inputs=x[160:], eval_labels=y[160:])
    assert out["curve"][-1]["agreement"] >= 0.85 and out["curve"][-1]["test_acc"] <= 0.15


def test_denormal_flushing_stays_on_through_the_per_epoch_evaluations_and_is_restored():
    """The per-epoch evaluation inside the CPU head loop used to switch flushing off for the epochs after it (a
    nested cpu_head_mode restored "off"): every batch of every epoch now trains with it on, and the caller's
    setting is what it was before, on or off."""
    from w2s_harness._engine.torch_settings import flush_denormal_enabled
    from w2s_harness._engine.training import cpu_head_mode

    x, y, t = separable()
    seen = []

    def recording_xent(logits, targets, step_frac=0.0):
        seen.append(flush_denormal_enabled())
        return xent(logits, targets)

    for before in (False, True):
        torch.set_flush_denormal(before)
        try:
            seen.clear()
            fit(zero_linear_head(4, 2), x[:160], t[:160], recording_xent, TrainConfig(lr=0.05, epochs=3), seed=0,
                device="cpu", eval_inputs=x[160:], eval_labels=y[160:])
            assert len(seen) == 15 and all(seen), seen  # 3 epochs x 5 batches, each evaluated in between
            assert flush_denormal_enabled() is before
            predict_proba(zero_linear_head(4, 2), x, device="cpu")  # an evaluation on its own
            assert flush_denormal_enabled() is before
            with cpu_head_mode(True):
                with cpu_head_mode(True):
                    pass
                assert flush_denormal_enabled()
            assert flush_denormal_enabled() is before
        finally:
            torch.set_flush_denormal(False)


# ------------------------------------------------------------------------------- early stopping


class Scripted(torch.nn.Module):
    """Logits scripted per epoch: ``table[e]`` (``(rows, 2)``) after ``e`` finished epochs, for inputs that are
    one-hot row ids. Each training forward counts a step; the counter is a buffer, so restoring a checkpoint
    restores the epoch the model is at."""

    def __init__(self, table, steps_per_epoch):
        super().__init__()
        self.table = torch.as_tensor(np.asarray(table, dtype=np.float32))
        self.steps_per_epoch = steps_per_epoch
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        if self.training:
            self.steps += 1
            epoch = int(self.steps - 1) // self.steps_per_epoch
        else:
            epoch = int(self.steps) // self.steps_per_epoch
        rows = x.argmax(dim=1)
        return self.table[epoch][rows] + 0.0 * self.w  # a gradient for the optimiser, never a change


def _scripted_case():
    """Two validation rows (ids 0, 1; classes 1, 1 by ground truth, weak labels 1, 0) over four epochs:
    ground-truth validation accuracy is best after epoch 2, weak-label validation accuracy after epoch 4."""
    predicted = [None, [0, 0], [1, 1], [1, 0], [1, 0]]  # class per val row after epochs 1..4 (index 0: init)
    table = [[[0.0, 0.0]] * 3]
    for cls in predicted[1:]:
        table.append([[0.0, 1.0] if c == 1 else [1.0, 0.0] for c in cls] + [[0.0, 1.0]])
    train_x = np.eye(3, dtype=np.float32)[[2] * 4]  # row id 2: four training rows, one step per epoch
    val_x = np.eye(3, dtype=np.float32)[[0, 1]]
    return table, train_x, val_x


@pytest.mark.parametrize("policy, val_classes, best_epoch, best_acc", [
    ("gt_val", [1, 1], 2, 1.0),  # epoch 2 predicts (1, 1): both right; epochs 3-4 (1, 0): half
    ("weak_val", [1, 0], 3, 1.0),  # (1, 0) is right from epoch 3 on: the earliest best is kept
])
def test_early_stopping_restores_the_epoch_the_validation_labels_pick(policy, val_classes, best_epoch, best_acc):
    table, train_x, val_x = _scripted_case()
    cfg = check_train_config("scripted", lr=0.01, epochs=4, batch_size=4, early_stop=policy)
    module = Scripted(table, steps_per_epoch=1)
    out = fit(module, train_x, np.eye(2, dtype=np.float32)[[1] * 4], xent, cfg, seed=0, device="cpu",
              val_inputs=val_x, val_targets=np.asarray(val_classes))
    assert [p["val_acc"] for p in out["curve"]] == ([0.0, 1.0, 0.5, 0.5] if policy == "gt_val"
                                                     else [0.5, 0.5, 1.0, 1.0])
    assert out["early_stop"] == {"policy": policy, "selected_step": best_epoch, "selected_epoch": best_epoch,
                                 "val_acc": best_acc, "n_val": 2}
    predicted = predict_proba(module, val_x, device="cpu").argmax(1)
    np.testing.assert_array_equal(predicted, np.asarray(table[best_epoch])[[0, 1]].argmax(1))


def test_early_stopping_needs_a_validation_slice_and_validates_its_config():
    x, _, t = separable(40)
    cfg = check_train_config("m", lr=0.01, epochs=1, batch_size=8, early_stop="weak_val")
    with pytest.raises(Exception, match="needs val_inputs"):
        fit(zero_linear_head(4, 2), x, t, xent, cfg, seed=0, device="cpu")
    for kwargs, match in [({"early_stop": "best"}, r"early_stop must be one of none, weak_val, gt_val"),
                          ({"val_frac": 0.1}, r"val_frac only applies with early_stop"),
                          ({"early_stop": "gt_val", "val_frac": 1.5}, r"val_frac must be a number in \(0, 1\)"),
                          ({"curve_every": -1}, r"curve_every must be an integer >= 0")]:
        with pytest.raises(ConfigError, match=match) as e:
            check_train_config("model 'm'", lr=0.01, epochs=1, batch_size=8, **kwargs)
        assert "\n" not in str(e.value) and "model 'm'" in str(e.value)
    assert check_train_config("m", lr=0.01, epochs=1, batch_size=8).early_stop == "none"  # the reference


def test_validation_split_is_seeded_disjoint_and_reproducible():
    keep, held = validation_split(50, 0.2, seed=3)
    assert len(held) == 10 and len(keep) == 40 and not set(keep) & set(held)
    again = validation_split(50, 0.2, seed=3)
    np.testing.assert_array_equal(held, again[1])
    assert not np.array_equal(held, validation_split(50, 0.2, seed=4)[1])
    assert len(validation_split(3, 0.01, seed=0)[1]) == 1  # at least one row held out, one kept


# ------------------------------------------------------------------------------- tiny real runs


class ToyStop(ToyHash):
    """``toy-hash`` registered with the early-stopping and curve options as its own parameters."""

    name = "toy-stop"

    def __init__(self, dim: int = 64, epochs: int = 6, lr: float = 0.05, early_stop: str = "none",
                 val_frac: float | None = None, curve_every: int = 0):
        super().__init__(dim, epochs, lr, early_stop=early_stop, val_frac=val_frac, curve_every=curve_every,
                         batch_size=16)


class ToyPlugin:
    @hookimpl
    def w2s_register_models(self, registry):
        registry.add("toy-stop", ToyStop, description="hashed bag of words with early stopping (tests)")


def test_curves_recorded_and_plotted_in_a_tiny_real_run(tmp_path, capsys):
    cfg = write_config(tmp_path, seeds="[0]")
    assert main(["run", "--config", str(cfg), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    for st in res["stages"]:
        if st["op"] != "train":
            continue
        m = st["metrics"]
        assert [p["step"] for p in m["curve"]] == sorted(p["step"] for p in m["curve"])
        assert len(m["curve"]) == len(m["epoch_test_acc"]) and m["curve"][-1]["step"] == m["steps"]
        assert {"step", "epoch", "train_loss", "agreement", "test_acc"} <= set(m["curve"][0])
        assert 0 <= m["test_auroc"] <= 1
    for e in res["experiments"]:
        a = e["analysis"]
        assert a["agreement"]["n"] == 1 and 0 <= a["agreement"]["mean"] <= 1
        assert a["gain"]["per_seed"][0] == pytest.approx(e["transfer_acc"]["per_seed"][0]
                                                         - e["weak_acc"]["per_seed"][0])
        # the weak-label accuracy on train2 is the label stage's own label_acc
        label_stage = next(s for s in res["stages"] if s["kind"] == "label")
        assert a["label_acc_train2"]["mean"] == pytest.approx(label_stage["metrics"]["label_acc"])
        assert e["early_stop"] == {}
    out = tmp_path / "out"
    assert main(["report", str(out), "--metrics", "agreement,misfit,auroc"]) == 0
    err = capsys.readouterr().err
    assert "Why it generalised" in err and "wrote" in err
    for name in ("curves.png", "misfit.png", "accuracy.png", "pgr.png"):
        assert (out / name).stat().st_size > 1000, name
    assert main(["report", str(out), "--metrics", "imitation"]) == 2
    assert "unknown 'imitation'" in capsys.readouterr().err


@pytest.mark.parametrize("policy", ["weak_val", "gt_val"])
def test_early_stopping_in_a_real_run_selects_on_its_labels(tmp_path, capsys, policy):
    cfg = write_config(tmp_path, seeds="[0]", loss_block='[[loss]]\nname = "xent"\n')
    argv = ["run", "--config", str(cfg), "--strong", "toy-stop", "--set", f'strong.early_stop="{policy}"',
            "--set", "strong.val_frac=0.25", "--json"]
    assert main(argv, plugins=[ToyPlugin()]) == 0
    res = json.loads(capsys.readouterr().out)
    stages = {s["kind"]: s for s in res["stages"]}
    transfer, labels = stages["train_transfer"], stages["label"]
    stop = transfer["metrics"]["early_stop"]
    curve = transfer["metrics"]["curve"]
    vals = [p["val_acc"] for p in curve]
    best = int(np.argmax(vals))  # the earliest best
    assert stop["policy"] == policy and stop["selected_step"] == curve[best]["step"]
    n_train2 = labels["metrics"]["n"]
    assert stop["val_acc"] == vals[best] and stop["n_val"] == round(0.25 * n_train2)  # a quarter of train2
    assert transfer["metrics"]["n_train"] == n_train2 - stop["n_val"]
    # the stored predictions are the selected model's: rescore the held-out slice against the policy's labels
    store = Path(res["config"]["run"]["output_dir"]) / "stages"
    arrays = dict(np.load(store / transfer["id"] / "artifact.npz"))
    weak_labels = dict(np.load(store / labels["id"] / "artifact.npz"))
    rows = weak_labels["indices"]  # train2, as the transfer saw it
    _, held = validation_split(len(rows), 0.25, seed=0)
    truth = dataset_labels(res)[rows[held]] if policy == "gt_val" else weak_labels["probs"][held].argmax(1)
    assert np.mean(lookup(arrays, rows[held]).argmax(1) == truth) == pytest.approx(stop["val_acc"])
    assert res["experiments"][0]["early_stop"]["transfer"] == policy
    code = main(["report", str(tmp_path / "out"), "--no-plots"])
    err = capsys.readouterr().err
    assert code == 0 and (("an oracle, not a weak-to-strong result" in err) == (policy == "gt_val"))


def dataset_labels(res) -> np.ndarray:
    """Ground-truth class ids of the ``local`` CSV a run read (by row, as the dataset numbers them)."""
    from w2s_harness._plugin_system.manager import create_plugin_manager

    params = {k: v for k, v in res["config"]["dataset"].items() if k != "name"}
    return np.asarray(create_plugin_manager().create("dataset", "local", **params).load().labels)
