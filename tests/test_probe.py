"""The L-BFGS probe solver (w2s_harness._engine.probe): scikit-learn parity, hard weak labels, parameters and errors.

Real data, kept small: the test CSV of test_pipeline.py (600 rows) embedded by the real ``glove-bow`` model. The
reference is scikit-learn's ``StandardScaler`` + ``LogisticRegression(C)``; soft labels are compared with the
same objective written for scikit-learn (every row once per class, weighted by that class's probability).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from run_config import local_run_config
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from test_pipeline import make_csv

from w2s_harness._cli.cli import main
from w2s_harness._contracts.components import check_train_config
from w2s_harness._contracts.errors import ConfigError, InputError, TrainingError
from w2s_harness._engine.probe import fit_lbfgs, hard_targets
from w2s_harness._engine.training import fit, predict_proba, zero_linear_head

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")
N_ROWS, N_TEST = 600, 200
SEEDS = (0, 1, 2)
#: Accuracy tolerance of the parity tests: 0.5 points.
TOL = 0.005


def lbfgs(**params):
    return check_train_config("model 'test'", lr=1e-3, epochs=1, batch_size=32, solver="lbfgs", **params)


def xent_loss():
    from w2s_harness.plugins.losses.xent import XentLoss

    return XentLoss()


def sk_fit(x, y, C, sample_weight=None):
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=C, tol=1e-8, max_iter=10_000).fit(scaler.transform(x), y,
                                                                    sample_weight=sample_weight)
    return lambda z: model.predict_proba(scaler.transform(z))


def sk_fit_soft(x, probs, C):
    """L2 logistic regression on soft labels: each row once per class, weighted by its probability."""
    k = probs.shape[1]
    scaler = StandardScaler().fit(x)
    xs = scaler.transform(x)
    model = LogisticRegression(C=C, tol=1e-8, max_iter=10_000).fit(
        np.concatenate([xs] * k), np.repeat(np.arange(k), len(x)), sample_weight=probs.T.reshape(-1))
    return lambda z: model.predict_proba(scaler.transform(z))


def acc(probs, labels):
    return float(np.mean(np.asarray(probs).argmax(1) == labels))


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    return make_csv(tmp_path_factory.mktemp("probe") / "reviews.csv", n=N_ROWS)


@pytest.fixture(scope="module")
def glove(csv):
    """``(texts' glove-bow features, labels, dataset)`` of the test CSV."""
    from w2s_harness import create_dataset, create_model

    ds = create_dataset("local", path=str(csv), text_columns=["text"], label_column="label", n_test=N_TEST)
    data = ds.load()
    model = create_model("glove-bow")
    feats = model.features(data.texts)[model.feature_key()]
    return feats, np.asarray(data.labels), ds


def torch_chain(feats, labels, sp, weak_cfg, strong_cfg):
    """Weak on train1 ground truth, its soft labels on train2, ceiling and transfer: ``(accs, weak labels)``."""
    one_hot = np.eye(2, dtype=np.float32)
    out, loss = {}, xent_loss()
    weak = zero_linear_head(feats.shape[1], 2)
    fit(weak, feats[sp.train1], one_hot[labels[sp.train1]], loss, weak_cfg, seed=0, device=CPU)
    out["weak"] = acc(predict_proba(weak, feats[sp.test], device=CPU), labels[sp.test])
    weak_labels = predict_proba(weak, feats[sp.train2], device=CPU)
    ceiling = zero_linear_head(feats.shape[1], 2)
    fit(ceiling, feats[sp.train2], one_hot[labels[sp.train2]], loss, strong_cfg, seed=0, device=CPU)
    out["ceiling"] = acc(predict_proba(ceiling, feats[sp.test], device=CPU), labels[sp.test])
    transfer = zero_linear_head(feats.shape[1], 2)
    fit(transfer, feats[sp.train2], weak_labels, loss, strong_cfg, seed=0, device=CPU)
    out["transfer_probs"] = predict_proba(transfer, feats[sp.test], device=CPU)
    out["transfer"] = acc(out["transfer_probs"], labels[sp.test])
    return out, weak_labels


@pytest.mark.parametrize("seed", SEEDS)
def test_weak_ceiling_transfer_match_sklearn_per_seed(glove, seed):
    feats, labels, ds = glove
    sp = ds.splits(seed)
    ours, _ = torch_chain(feats, labels, sp, lbfgs(C=0.05), lbfgs(C=1.0))
    w = sk_fit(feats[sp.train1], labels[sp.train1], 0.05)
    ref_weak_labels = w(feats[sp.train2])
    c = sk_fit(feats[sp.train2], labels[sp.train2], 1.0)
    t = sk_fit_soft(feats[sp.train2], ref_weak_labels, 1.0)
    ref = {"weak": acc(w(feats[sp.test]), labels[sp.test]), "ceiling": acc(c(feats[sp.test]), labels[sp.test]),
           "transfer": acc(t(feats[sp.test]), labels[sp.test])}
    for key in ("weak", "ceiling", "transfer"):
        assert ours[key] == pytest.approx(ref[key], abs=TOL), (key, ours[key], ref[key])
    # not only the argmax: the probabilities agree too (to the default tolerance's precision)
    assert np.abs(ours["transfer_probs"] - t(feats[sp.test])).max() < 1e-2


def test_soft_labels_are_sklearn_with_duplicated_weighted_rows_three_classes():
    """k > 2 (multinomial, penalty on every row) on soft labels, against the same objective in scikit-learn."""
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(300, 6)) * [1, 10, 0.1, 3, 1, 50] + [0, 5, -2, 0, 100, 0]).astype(np.float32)
    logits = x[:, :3] / [1, 10, 0.1]
    p = np.exp(logits - logits.max(1, keepdims=True))
    soft = (p / p.sum(1, keepdims=True)).astype(np.float32)
    head = zero_linear_head(6, 3)
    hist = fit(head, x, soft, xent_loss(), lbfgs(C=0.3, tol=1e-6), seed=0, device=CPU)
    assert hist["solver"] == "lbfgs" and hist["converged"]
    ref = sk_fit_soft(x, soft, 0.3)
    assert np.abs(predict_proba(head, x, device=CPU) - ref(x)).max() < 1e-3


def lbfgs_config(tmp_path, csv, *, weak_C: float, seeds: str):
    """A naive glove-bow -> glove-bow run with both heads on L-BFGS (the strong one with its default C = 1)."""
    return local_run_config(tmp_path / "run.toml", csv, seeds=seeds, n_test=N_TEST, out=tmp_path / "out",
                            weak=f'name = "glove-bow"\nsolver = "lbfgs"\nC = {weak_C}', strong='name = "glove-bow"',
                            losses='[loss]\nname = "xent"')


def test_e2e_run_with_lbfgs_models_matches_sklearn(tmp_path, csv, capsys, glove):
    """Through the runner: both models' parameters reach the solver, and each seed's weak / ceiling / transfer
    accuracy in results.json is scikit-learn's on the same features and splits."""
    feats, labels, ds = glove
    cfg = lbfgs_config(tmp_path, csv, weak_C=0.05, seeds="[0, 1]")
    assert main(["run", "--config", str(cfg), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    (exp,) = res["experiments"]
    for i, seed in enumerate(exp["seeds"]):
        sp = ds.splits(seed)
        w = sk_fit(feats[sp.train1], labels[sp.train1], 0.05)
        c = sk_fit(feats[sp.train2], labels[sp.train2], 1.0)
        t = sk_fit_soft(feats[sp.train2], w(feats[sp.train2]), 1.0)
        for key, f in (("weak_acc", w), ("ceiling_acc", c), ("transfer_acc", t)):
            assert exp[key]["per_seed"][i] == pytest.approx(acc(f(feats[sp.test]), labels[sp.test]), abs=TOL)
    train = [s for s in res["stages"] if s["kind"].startswith("train")]
    assert all(s["metrics"]["solver"] == "lbfgs" and s["metrics"]["converged"] for s in train)


def test_hard_weak_labels(glove):
    """weak_labels = "hard" trains on the argmax of the soft labels: the same head as one-hot targets, and with
    lbfgs scikit-learn's on the argmax labels; it changes the soft-label result; ground truth is unaffected."""
    feats, labels, ds = glove
    sp = ds.splits(0)
    x, y_true = feats[sp.train2], labels[sp.train2]
    soft = np.clip(np.eye(2, dtype=np.float32)[y_true] * 0.6 + 0.2, 0, 1)
    soft[::3] = soft[::3, ::-1]  # a third of the rows lean to the other class
    hard = hard_targets(soft)
    assert hard.dtype == soft.dtype and set(np.unique(hard)) == {0.0, 1.0}
    assert np.array_equal(hard.argmax(1), soft.argmax(1)) and np.all(hard.sum(1) == 1)
    assert np.array_equal(hard_targets(y_true), y_true)  # class ids are hard already
    for solver_cfg in (lbfgs(weak_labels="hard"),
                       check_train_config("m", lr=1e-2, epochs=2, batch_size=32, weak_labels="hard")):
        a, b = zero_linear_head(x.shape[1], 2), zero_linear_head(x.shape[1], 2)
        fit(a, x, soft, xent_loss(), solver_cfg, seed=0, device=CPU)
        plain = check_train_config("m", lr=solver_cfg.lr, epochs=solver_cfg.epochs, batch_size=32,
                                   solver=solver_cfg.solver)
        fit(b, x, hard, xent_loss(), plain, seed=0, device=CPU)
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    head_hard = zero_linear_head(x.shape[1], 2)
    fit(head_hard, x, soft, xent_loss(), lbfgs(weak_labels="hard", tol=1e-6), seed=0, device=CPU)
    ref = sk_fit(x, soft.argmax(1), 1.0)
    assert np.abs(predict_proba(head_hard, feats[sp.test], device=CPU) - ref(feats[sp.test])).max() < 2e-3
    head_soft = zero_linear_head(x.shape[1], 2)
    fit(head_soft, x, soft, xent_loss(), lbfgs(tol=1e-6), seed=0, device=CPU)
    assert not torch.allclose(head_soft.weight, head_hard.weight)


def test_standardisation_is_folded_into_the_head():
    """The head applies to raw features: rescaling or shifting a feature changes nothing (up to rounding), and a
    constant feature is harmless."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = (x[:, 0] - x[:, 1] + 0.5 * rng.normal(size=200) > 0).astype(np.int64)
    x[:, 3] = 7.0
    scaled = x * np.array([1000, 1, 1e-3, 1], dtype=np.float32) + np.array([0, 50, 0, 0], dtype=np.float32)
    probs = []
    for feats in (x, scaled):
        head = zero_linear_head(4, 2)
        fit(head, feats, y, xent_loss(), lbfgs(tol=1e-6), seed=0, device=CPU)
        probs.append(predict_proba(head, feats, device=CPU))
    assert np.abs(probs[0] - probs[1]).max() < 1e-4


def test_schedule_dependent_loss_is_solved_along_its_schedule():
    """A loss that reads step_frac is minimised at step_frac 0, 0.1, ..., 1 in turn; logconf trains and ends at
    its full-confidence objective (it differs from xent)."""
    from w2s_harness.plugins.losses.logconf import LogConfLoss

    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 5)).astype(np.float32)
    p1 = 1 / (1 + np.exp(-(x[:, 0] + 0.3 * rng.normal(size=300))))
    soft = np.stack([1 - p1, p1], 1).astype(np.float32)
    seen = []

    def recorder(logits, targets, step_frac=0.0):
        seen.append(step_frac)
        return -(targets * torch.log_softmax(logits, -1)).sum(-1).mean()

    fit(zero_linear_head(5, 2), x, soft, recorder, lbfgs(), seed=0, device=CPU)
    assert seen[0] == 0.0 and seen[-1] == 1.0 and sorted(set(seen)) == [i / 10 for i in range(11)]
    assert seen == sorted(seen)
    heads = {}
    for name, loss in (("xent", xent_loss()), ("logconf", LogConfLoss())):
        heads[name] = zero_linear_head(5, 2)
        hist = fit(heads[name], x, soft, loss, lbfgs(), seed=0, device=CPU)
        assert np.isfinite(hist["final_train_loss"]) and hist["steps"] > 0
    # the confidence loss pushes the probabilities further from 0.5 than xent does
    conf = {k: np.abs(predict_proba(h, x, device=CPU)[:, 1] - 0.5).mean() for k, h in heads.items()}
    assert conf["logconf"] > conf["xent"]


def test_lbfgs_is_deterministic_and_converges_within_max_iter():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(256, 10)).astype(np.float32)
    y = (x @ rng.normal(size=10) > 0).astype(np.int64)
    a, b = zero_linear_head(10, 2), zero_linear_head(10, 2)
    ha = fit(a, x, y, xent_loss(), lbfgs(C=1e3), seed=0, device=CPU)
    fit(b, x, y, xent_loss(), lbfgs(C=1e3), seed=5, device=CPU)
    assert torch.equal(a.weight, b.weight) and ha["converged"]
    capped = fit(zero_linear_head(10, 2), x, y, xent_loss(), lbfgs(C=1e3, max_iter=2), seed=0, device=CPU)
    assert not capped["converged"] and capped["steps"] <= 2 * 11


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"solver": "sgd"}, "model 'm': solver must be one of adamw, lbfgs, got 'sgd'"),
        ({"solver": "lbfgs", "C": 0}, "model 'm': C must be a number > 0, got 0"),
        ({"solver": "lbfgs", "C": True}, "model 'm': C must be a number > 0, got True"),
        ({"solver": "lbfgs", "C": float("inf")}, "model 'm': C must be a number > 0, got inf"),
        ({"solver": "lbfgs", "max_iter": 0}, "model 'm': max_iter must be an integer >= 1, got 0"),
        ({"solver": "lbfgs", "max_iter": 2.5}, "model 'm': max_iter must be an integer >= 1, got 2.5"),
        ({"solver": "lbfgs", "tol": -1e-3}, "model 'm': tol must be a number > 0, got -0.001"),
        ({"weak_labels": "argmax"}, "model 'm': weak_labels must be one of soft, hard, got 'argmax'"),
        ({"C": 0.5}, 'model \'m\': C only applies to solver = "lbfgs"; set solver = "lbfgs"'),
        ({"C": 0.5, "max_iter": 10}, 'model \'m\': C, max_iter only apply to solver = "lbfgs"; set solver = "lbfgs"'),
    ],
)
def test_bad_solver_parameters_are_one_line_errors(params, message):
    with pytest.raises(ConfigError) as err:
        check_train_config("model 'm'", lr=1e-3, epochs=1, batch_size=32, **params)
    assert str(err.value) == message


def test_model_parameters_reach_the_train_config():
    from w2s_harness.plugins.models.hf import HFModel

    from w2s_harness import create_model

    cfg = create_model("glove-bow", solver="lbfgs", C=0.1, max_iter=50, tol=1e-5, weak_labels="hard").train_config
    assert (cfg.solver, cfg.C, cfg.max_iter, cfg.tol, cfg.weak_labels) == ("lbfgs", 0.1, 50, 1e-5, "hard")
    with pytest.raises(ConfigError, match=r"^model 'glove-bow': C must be a number > 0, got -1$"):
        create_model("glove-bow", solver="lbfgs", C=-1)
    probe = HFModel("some/checkpoint", solver="lbfgs", C=2.0)
    assert (probe.train_config.solver, probe.train_config.C) == ("lbfgs", 2.0)
    with pytest.raises(ConfigError) as err:
        HFModel("some/checkpoint", linear_probe=False, solver="lbfgs")
    assert str(err.value).startswith("model 'hf:some/checkpoint': solver = 'lbfgs' applies to linear probes only")
    assert "\n" not in str(err.value)


def test_default_solver_is_lbfgs_unless_adamw_parameters_are_set():
    """Linear probes default to lbfgs (glove-bow C = 1, hf: probes C = PROBE_C); a probe configured with an AdamW
    parameter keeps training with AdamW; fine-tuning is always AdamW; an explicit conflict is a one-line error."""
    from w2s_harness.plugins.models.hf import PROBE_C, HFModel

    from w2s_harness import create_model

    glove = create_model("glove-bow").train_config
    assert (glove.solver, glove.C, glove.weak_labels) == ("lbfgs", 1.0, "soft")
    hf = HFModel("some/checkpoint").train_config
    assert (hf.solver, hf.C) == ("lbfgs", PROBE_C)
    for params in ({"lr": 3e-3}, {"epochs": 5}, {"batch_size": 64}, {"weight_decay": 0.1}, {"warmup_frac": 0.1}):
        assert create_model("glove-bow", **params).train_config.solver == "adamw", params
        assert HFModel("some/checkpoint", **params).train_config.solver == "adamw", params
    # early stopping and curves apply to either solver: they leave the default alone
    stop = create_model("glove-bow", early_stop="weak_val", curve_every=5).train_config
    assert (stop.solver, stop.early_stop, stop.curve_every) == ("lbfgs", "weak_val", 5)
    assert create_model("glove-bow", solver="lbfgs", early_stop="gt_val", val_frac=0.1).train_config.val_frac == 0.1
    assert HFModel("some/checkpoint", linear_probe=False).train_config.solver == "adamw"
    assert create_model("glove-bow", solver="adamw").train_config.solver == "adamw"
    with pytest.raises(ConfigError) as err:
        create_model("glove-bow", solver="lbfgs", lr=1e-2, epochs=3)
    assert str(err.value) == ('model \'glove-bow\': lr, epochs only apply to solver = "adamw" (mini-batch training); '
                              'remove them or set solver = "adamw"')
    with pytest.raises(ConfigError, match=r'^model \'glove-bow\': C only applies to solver = "lbfgs"'):
        create_model("glove-bow", lr=1e-2, C=0.1)


def test_lbfgs_needs_a_linear_head_on_features():
    x = np.zeros((4, 3), dtype=np.float32)
    y = np.array([0, 1, 0, 1])
    mlp = torch.nn.Sequential(torch.nn.Linear(3, 2))
    with pytest.raises(TrainingError, match=r"^weak: solver = \"lbfgs\" needs a linear head .*weak\.solver"):
        fit_lbfgs(mlp, x, y, xent_loss(), lbfgs(), seed=0, device=CPU, where="weak")
    with pytest.raises(TrainingError, match=r"fine-tunes on texts; set strong\.solver = \"adamw\"$"):
        fit(zero_linear_head(3, 2), ["a", "b"], np.array([0, 1]), xent_loss(), lbfgs(), seed=0, device=CPU,
            where="transfer")


def test_solver_parameters_are_in_the_stage_identity(tmp_path, csv, capsys):
    """Changing a model's C or solver re-plans exactly that model's stages (dry run: nothing trains)."""
    cfg = lbfgs_config(tmp_path, csv, weak_C=0.05, seeds="[0]")
    assert main(["run", "--config", str(cfg)]) == 0
    capsys.readouterr()
    for change in ("strong.C=0.1", 'strong.solver="adamw"'):
        assert main(["run", "--config", str(cfg), "--set", change, "--dry-run"]) == 0
        assert "4 stages: 2 cached, 0 new, 2 changed (dry run" in capsys.readouterr().err, change
    assert main(["run", "--config", str(cfg), "--set", "weak.C=0.1", "--dry-run"]) == 0
    assert "4 stages: 1 cached, 0 new, 3 changed (dry run" in capsys.readouterr().err  # not the ceiling


# ------------------------------------------------------------------------------- curves and early stopping


def noisy_soft_labels(n=400, d=8, seed=4):
    """Correlated features and soft labels: an xent solve takes a few dozen iterations."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 3))
    x = (base @ rng.normal(size=(3, d)) + 0.1 * rng.normal(size=(n, d))).astype(np.float32)
    p1 = 1 / (1 + np.exp(-(base[:, 0] - base[:, 1] + 0.5 * rng.normal(size=n))))
    return x, np.stack([1 - p1, p1], 1).astype(np.float32), (base[:, 0] - base[:, 1] > 0).astype(np.int64)


@pytest.mark.parametrize("loss_name", ["xent", "logconf"])
def test_lbfgs_curve_points_leave_the_solution_bit_for_bit_unchanged(loss_name):
    """Points every 1 or 3 iterations, or only at the ends of the continuation phases (an interval longer than
    the solve: each phase's LBFGS.step runs uninterrupted, as without curves), give the identical head and
    iteration count; the points are where the interval and the phases say, with the AdamW point keys."""
    from w2s_harness.plugins.losses.logconf import LogConfLoss

    x, soft, y = noisy_soft_labels()
    make = xent_loss if loss_name == "xent" else LogConfLoss
    heads, outs = {}, {}
    for every in (1, 3, 10**6):
        heads[every] = zero_linear_head(x.shape[1], 2)
        outs[every] = fit(heads[every], x[:300], soft[:300], make(), lbfgs(C=100.0, curve_every=every), seed=0,
                          device=CPU, eval_inputs=x[300:], eval_labels=y[300:])
    whole = outs[10**6]
    assert whole["steps"] > 6 and whole["converged"]
    for every in (1, 3):
        assert torch.equal(heads[every].weight, heads[10**6].weight) and torch.equal(heads[every].bias,
                                                                                     heads[10**6].bias)
        assert outs[every]["steps"] == whole["steps"]
    # uninterrupted: one point per phase that moved the head, at its end; the last is the solution
    ends = [p["step"] for p in whole["curve"]]
    assert ends == sorted(set(ends)) and ends[-1] == whole["steps"]
    assert [p["step_frac"] for p in whole["curve"]] == sorted(p["step_frac"] for p in whole["curve"])
    # every 3 iterations, plus those phase ends
    assert [p["step"] for p in outs[3]["curve"]] == sorted(set(range(3, whole["steps"] + 1, 3)) | set(ends))
    assert [p["step"] for p in outs[1]["curve"]] == list(range(1, whole["steps"] + 1))
    last = outs[1]["curve"][-1]
    assert set(last) == {"step", "step_frac", "train_loss", "agreement", "test_acc"}
    assert last["test_acc"] == outs[1]["epoch_test_acc"][0]
    assert last["train_loss"] == pytest.approx(whole["final_train_loss"], rel=1e-12)
    assert last["agreement"] == np.mean(predict_proba(heads[1], x[:300], device=CPU).argmax(1) == soft[:300].argmax(1))
    assert outs[1]["curve"][0]["train_loss"] > last["train_loss"]  # one iteration from zero is far from the end
    assert "early_stop" not in whole
    # the iteration cap of every phase (7 here) falls inside segments and at their cuts: still the same head
    capped = {}
    for every in (3, 10**6):
        capped[every] = zero_linear_head(x.shape[1], 2)
        fit(capped[every], x[:300], soft[:300], make(), lbfgs(C=1e4, tol=1e-9, max_iter=7, curve_every=every),
            seed=0, device=CPU)
    assert torch.equal(capped[3].weight, capped[10**6].weight)


def switching_loss(logits, targets, step_frac=0.0):
    """Cross-entropy towards the targets in the first half of the schedule and towards the other class in the
    second half: continuation fits the targets (phase 0), then the flipped targets (phase 5)."""
    if step_frac >= 0.5:
        targets = targets.flip(-1)
    return -(targets * torch.log_softmax(logits, dim=-1)).sum(-1).mean()


@pytest.mark.parametrize("policy", ["gt_val", "weak_val"])
def test_lbfgs_early_stopping_keeps_the_iterate_the_validation_labels_pick(policy):
    """Hand-checkable: with points only at phase ends there are exactly two, the head that fits the labels
    (phase 0) and the one that fits their opposite (phase 5). Validation rows labelled as the data (gt_val here)
    pick the first, rows labelled with the opposite classes (weak_val here: a weak model that is always wrong)
    the second; labels on which both score 1/2 keep the earliest."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(1, 2, 40), rng.uniform(-2, -1, 40)])[:, None].astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    val_x = np.array([[1.5], [-1.5], [1.2]], dtype=np.float32)
    truth = np.array([1, 0, 1])
    cfg = lbfgs(early_stop=policy, curve_every=10**6)
    val = truth if policy == "gt_val" else 1 - truth
    head = zero_linear_head(1, 2)
    out = fit(head, x, np.eye(2, dtype=np.float32)[y], switching_loss, cfg, seed=0, device=CPU,
              eval_inputs=val_x, eval_labels=truth, val_inputs=val_x, val_targets=np.eye(2)[val])
    first, second = out["curve"]
    assert (first["step_frac"], second["step_frac"]) == (0.0, 0.5)
    assert (first["test_acc"], second["test_acc"]) == (1.0, 0.0)  # fits the labels, then their opposite
    pick = first if policy == "gt_val" else second
    assert [p["val_acc"] for p in out["curve"]] == ([1.0, 0.0] if policy == "gt_val" else [0.0, 1.0])
    assert out["early_stop"] == {"policy": policy, "selected_step": pick["step"],
                                 "selected_step_frac": pick["step_frac"], "val_acc": 1.0, "n_val": 3}
    assert out["steps"] == second["step"] and out["converged"]  # the solve still ran to its end
    # the head is the selected iterate: it predicts what that point scored
    predicted = predict_proba(head, val_x, device=CPU).argmax(1)
    np.testing.assert_array_equal(predicted, truth if policy == "gt_val" else 1 - truth)
    assert out["epoch_test_acc"] == [pick["test_acc"]]
    # a tie (one of two validation rows right at both points) keeps the earliest
    tie = fit(zero_linear_head(1, 2), x, np.eye(2, dtype=np.float32)[y], switching_loss, cfg, seed=0, device=CPU,
              val_inputs=val_x[:2], val_targets=np.array([1, 1]))
    assert [p["val_acc"] for p in tie["curve"]] == [0.5, 0.5] and tie["early_stop"]["selected_step"] == first["step"]


def test_lbfgs_early_stopping_needs_its_validation_slice():
    x, soft, _ = noisy_soft_labels(40)
    with pytest.raises(InputError, match=r"^weak: early_stop='weak_val' needs val_inputs and val_targets$"):
        fit(zero_linear_head(x.shape[1], 2), x, soft, xent_loss(), lbfgs(early_stop="weak_val"), seed=0,
            device=CPU, where="weak")


def test_e2e_lbfgs_curves_early_stopping_and_report(tmp_path, csv, capsys):
    """A real run with L-BFGS heads: every train stage records a curve, the transfer early-stops on its weak
    labels at the point with the best validation accuracy, and ``report`` plots the curves."""
    cfg = lbfgs_config(tmp_path, csv, weak_C=0.05, seeds="[0]")
    argv = ["run", "--config", str(cfg), "--set", 'strong.early_stop="weak_val"', "--set", "strong.curve_every=2",
            "--json"]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    stages = {s["kind"]: s for s in res["stages"]}
    for kind in ("train_weak", "train_ceiling", "train_transfer"):
        m = stages[kind]["metrics"]
        assert m["solver"] == "lbfgs" and m["curve"] and m["curve"][-1]["step"] == m["steps"], kind
        assert {"step", "step_frac", "train_loss", "agreement", "test_acc"} <= set(m["curve"][0])
    transfer = stages["train_transfer"]["metrics"]
    vals = [p["val_acc"] for p in transfer["curve"]]
    best = transfer["curve"][int(np.argmax(vals))]  # the earliest best
    assert transfer["early_stop"]["selected_step"] == best["step"] and transfer["early_stop"]["val_acc"] == max(vals)
    assert transfer["test_acc"] == best["test_acc"]  # the stored predictions are the selected iterate's
    assert res["experiments"][0]["early_stop"]["transfer"] == "weak_val"
    assert main(["report", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "curves.png").stat().st_size > 1000
