"""fit / predict_proba / accuracy (w2s_harness._engine.training) and the feature cache (w2s_harness._data.features)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from w2s_harness._contracts.components import TextData, TrainConfig, check_train_config
from w2s_harness._contracts.errors import ConfigError, TrainingError
from w2s_harness._data.features import FeatureCache, cache_name
from w2s_harness._engine.training import (
    accuracy,
    fit,
    lr_multiplier,
    predict_proba,
    total_steps,
    zero_linear_head,
)


def xent(logits, targets, step_frac=0.0):
    return -(targets * torch.log_softmax(logits, dim=-1)).sum(-1).mean()


class Recorder:
    """A loss that records the step_frac it is given."""

    def __init__(self):
        self.fracs = []

    def __call__(self, logits, targets, step_frac=0.0):
        self.fracs.append(step_frac)
        return xent(logits, targets)


def separable(n=400, d=8, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    x = rng.normal(size=(4 * n, d)).astype(np.float32)
    x = x[np.abs(x @ w) > 0.5 * np.linalg.norm(w)][:n]  # a margin around the separating plane
    y = (x @ w > 0).astype(np.int64)
    return x, y, np.eye(2, dtype=np.float32)[y]


def test_linear_head_learns_separable_data():
    x, y, t = separable()
    head = zero_linear_head(8, 2)
    cfg = TrainConfig(lr=5e-2, epochs=10, batch_size=32)
    out = fit(
        head, x[:300], t[:300], xent, cfg, seed=0, device="cpu", eval_inputs=x[300:], eval_labels=y[300:]
    )
    assert len(out["epoch_test_acc"]) == 10
    assert out["epoch_test_acc"][-1] > 0.95
    assert out["steps"] == total_steps(300, cfg) == 10 * 10
    assert out["final_train_loss"] < 0.3
    probs = predict_proba(head, x[300:], device=torch.device("cpu"))
    assert probs.dtype == np.float32 and probs.shape == (100, 2)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-6)
    assert accuracy(probs, y[300:]) == out["epoch_test_acc"][-1]
    assert accuracy(probs, t[300:]) == accuracy(probs, y[300:])  # soft/one-hot labels


def test_fit_is_deterministic_and_seed_matters():
    x, _, t = separable(200)
    cfg = TrainConfig(lr=5e-2, epochs=3, batch_size=16)

    def run(seed):
        head = zero_linear_head(8, 2)
        fit(head, x, t, xent, cfg, seed=seed, device="cpu")
        return predict_proba(head, x, device="cpu")

    a, b, c = run(1), run(1), run(2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_fit_leaves_global_rng_and_threads_alone():
    x, _, t = separable(64)
    threads = torch.get_num_threads()
    head = zero_linear_head(8, 2)  # nn.Linear's own init draws from the global RNG: create it first
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit(head, x, t, xent, TrainConfig(epochs=1), seed=0, device="cpu")
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


def test_nan_loss_raises_one_line_training_error():
    x, _, t = separable(100)
    calls = {"n": 0}

    def bad(logits, targets, step_frac=0.0):
        calls["n"] += 1
        loss = xent(logits, targets)
        return loss * float("nan") if calls["n"] == 6 else loss

    cfg = TrainConfig(lr=1e-3, epochs=3, batch_size=32)  # 4 batches per epoch: call 6 = epoch 2, batch 2
    with pytest.raises(TrainingError) as e:
        fit(zero_linear_head(8, 2), x, t, bad, cfg, seed=0, device="cpu", where="train_transfer")
    msg = str(e.value)
    assert "\n" not in msg
    assert "train_transfer" in msg and "epoch 2/3" in msg and "batch 2/4" in msg
    assert "--set strong.lr=" in msg and "float32" in msg
    with pytest.raises(TrainingError, match=r"--set weak\.lr="):
        calls["n"] = 0
        fit(zero_linear_head(8, 2), x, t, bad, cfg, seed=0, device="cpu", where="train_weak")


def test_step_frac_runs_from_zero_below_one_monotonically():
    x, _, t = separable(100)
    rec = Recorder()
    cfg = TrainConfig(epochs=3, batch_size=32)
    out = fit(zero_linear_head(8, 2), x, t, rec, cfg, seed=0, device="cpu")
    total = out["steps"]
    assert rec.fracs[0] == 0.0
    assert all(b > a for a, b in zip(rec.fracs, rec.fracs[1:]))
    assert rec.fracs[-1] == pytest.approx((total - 1) / total) and rec.fracs[-1] < 1


def test_cosine_schedule_with_warmup():
    assert lr_multiplier(0, 100, 0) == 1.0
    assert lr_multiplier(50, 100, 0) == pytest.approx(0.5)
    assert lr_multiplier(100, 100, 0) == pytest.approx(0.0)
    assert lr_multiplier(0, 100, 10) == 0.0 and lr_multiplier(5, 100, 10) == pytest.approx(0.5)
    assert lr_multiplier(10, 100, 10) == 1.0
    assert lr_multiplier(55, 100, 10) == pytest.approx(0.5)
    assert lr_multiplier(100, 100, 10) == pytest.approx(0.0)
    assert lr_multiplier(91, 100, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 81 / 90)))


def test_learning_rate_follows_schedule(monkeypatch):
    seen = []
    real_step = torch.optim.AdamW.step

    def step(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    import w2s_harness._engine.training as tr

    monkeypatch.setattr(tr, "_stepper", lambda optimizer: optimizer.step)  # every step through AdamW.step
    x, _, t = separable(64)
    fit(
        zero_linear_head(8, 2),
        x,
        t,
        xent,
        TrainConfig(lr=0.1, epochs=2, batch_size=8, warmup_frac=0.25),
        seed=0,
        device="cpu",
    )
    assert seen == pytest.approx([0.1 * lr_multiplier(s, 16, 4) for s in range(16)])


def test_text_inputs_go_through_module_forward():
    class BagOfChars(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = zero_linear_head(2, 2)

        def forward(self, texts):
            feats = torch.tensor([[t.count("a"), t.count("b")] for t in texts], dtype=torch.float32)
            return self.head(feats)

    texts = ["aaa", "bbb", "aab", "abb", "a", "bb"] * 10
    y = np.array([0, 1, 0, 1, 0, 1] * 10)
    m = BagOfChars()
    out = fit(
        m,
        texts,
        np.eye(2, dtype=np.float32)[y],
        xent,
        TrainConfig(lr=0.1, epochs=5, batch_size=8),
        seed=0,
        device="cpu",
        eval_inputs=texts,
        eval_labels=y,
    )
    assert out["epoch_test_acc"][-1] == 1.0
    probs = predict_proba(m, texts, device="cpu", batch_size=7)  # length-sorted batches, original order back
    assert (probs.argmax(1) == y).all()


def test_progress_counts_examples():
    x, _, t = separable(50)
    seen = []
    fit(
        zero_linear_head(8, 2),
        x,
        t,
        xent,
        TrainConfig(epochs=2, batch_size=16),
        seed=0,
        device="cpu",
        progress=seen.append,
    )
    assert sum(seen) == 100


def test_check_train_config_validates():
    assert check_train_config("m", lr=1e-3, epochs=2, batch_size=4).epochs == 2
    with pytest.raises(ConfigError, match="m: lr must be a number > 0, got 0"):
        check_train_config("m", lr=0, epochs=2, batch_size=4)
    with pytest.raises(ConfigError, match="batch_size must be an integer"):
        check_train_config("m", lr=1e-3, epochs=2, batch_size=2.5)
    with pytest.raises(ConfigError, match="warmup_frac"):
        check_train_config("m", lr=1e-3, epochs=2, batch_size=4, warmup_frac=2)


# ------------------------------------------------------------------------------------- feature cache


class FakeModel:
    name = "fake"

    def __init__(self, layer=2):
        self.layer = layer
        self.calls = 0

    def feature_key(self):
        return f"fake|layer={self.layer}"

    def features(self, texts, progress=None, device=None):
        self.calls += 1
        n = len(texts)
        return {f"fake|layer={k}": np.full((n, 3), k, dtype=np.float32) for k in (1, 2, 3)}


def _data(fp="fp1"):
    return TextData(["a", "b", "c", "d"], np.array([0, 1, 0, 1]), ["x", "y"], fp)


def test_feature_cache_stores_every_returned_key(tmp_path):
    cache = FeatureCache(tmp_path)
    m2 = FakeModel(2)
    x = cache.get(m2, _data())
    assert x.shape == (4, 3) and x.dtype == np.float32 and (x == 2).all()
    assert m2.calls == 1 and cache.misses == 1
    files = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))  # not .locks
    assert files == sorted(cache_name(f"fake|layer={k}", "fp1") for k in (1, 2, 3))
    assert not any(".tmp" in f for f in files)
    m1 = FakeModel(1)
    assert (cache.get(m1, _data()) == 1).all() and m1.calls == 0  # served from layer 2's pass
    fresh = FeatureCache(tmp_path)
    assert (fresh.get(FakeModel(3), _data()) == 3).all() and fresh.hits == 1  # from disk
    other = FakeModel(2)
    cache.get(other, _data("fp2"))  # other data -> recomputed
    assert other.calls == 1


def test_feature_cache_accepts_plain_array_and_checks_shape(tmp_path):
    class Plain(FakeModel):
        def features(self, texts, progress=None, device=None):
            return np.ones((len(texts), 5))

    x = FeatureCache(tmp_path).get(Plain(), _data())
    assert x.dtype == np.float32 and x.shape == (4, 5)

    class Wrong(FakeModel):
        def features(self, texts, progress=None, device=None):
            return {self.feature_key(): np.ones((2, 5))}

    from w2s_harness._contracts.errors import W2SError

    with pytest.raises(W2SError, match="shape"):
        FeatureCache(tmp_path / "w").get(Wrong(), _data())


# ----------------------------------------------------------------------------- the head loop's fast path


def _trained(loss, monkeypatch=None, plain_step=False, targets=None, seed=3):
    import w2s_harness._engine.training as tr

    x, _, t = separable(n=300, d=16, seed=seed)
    if monkeypatch is not None and plain_step:
        monkeypatch.setattr(tr, "_stepper", lambda optimizer: optimizer.step)
    head = zero_linear_head(16, 2)
    cfg = check_train_config("t", lr=1e-2, epochs=3, batch_size=32, weight_decay=0.01, warmup_frac=0.1)
    out = fit(head, x, t if targets is None else targets, loss, cfg, seed=seed, device="cpu")
    return torch.cat([head.weight.detach().flatten(), head.bias.detach()]), out


@pytest.mark.parametrize("name", ["xent", "logconf", "product"])
def test_prevalidated_fast_path_trains_exactly_like_the_checked_call(name):
    from w2s_harness._plugin_system.manager import create_plugin_manager

    pm = create_plugin_manager(entry_points=False)
    loss = pm.create("loss", name)
    # a wrapper hides prevalidate/compute, so fit calls the fully checked loss(...) on every batch
    checked = lambda logits, targets, step_frac: loss(logits, targets, step_frac=step_frac)
    w_fast, out_fast = _trained(loss)
    w_checked, out_checked = _trained(checked)
    assert torch.equal(w_fast, w_checked)
    assert out_fast["final_train_loss"] == out_checked["final_train_loss"]


def test_functional_adamw_step_is_bitwise_optimizer_step(monkeypatch):
    w_fast, _ = _trained(xent)
    w_plain, _ = _trained(xent, monkeypatch, plain_step=True)
    assert torch.equal(w_fast, w_plain)
    assert not torch.equal(w_fast, torch.zeros_like(w_fast))  # it trained


def test_bad_target_after_the_first_batch_is_still_caught():
    from w2s_harness._contracts.errors import InputError
    from w2s_harness._plugin_system.manager import create_plugin_manager

    x, _, t = separable(n=300, d=16)
    t = t.copy()
    t[-1] = [1.5, -0.5]  # never in the first batch's rows for most orders; found by the one-off full check
    loss = create_plugin_manager(entry_points=False).create("loss", "xent")
    with pytest.raises(InputError, match="negative probability"):
        fit(zero_linear_head(16, 2), x, t, loss, TrainConfig(epochs=1), seed=0, device="cpu")


# ---------------------------------------------------------------------- the schedule a loss sees (issue 23)


def oa_step_fracs(n: int, epochs: int, batch_size: int) -> list[float]:
    """openai/weak-to-strong weak_to_strong/train.py: ``nsteps = len(ds) * epochs // batch_size`` (line 62) and
    ``loss_fn(..., step_frac=step / nsteps)`` once per optimiser step, over the epochs chained (lines 81, 91, 127)."""
    nsteps = n * epochs // batch_size
    return [step / nsteps for step in range(nsteps)]


class Forwards(torch.nn.Module):
    """A text classifier that counts its forward passes and hands the loss the logits of its last one."""

    def __init__(self):
        super().__init__()
        self.head = zero_linear_head(2, 2)
        self.calls: list[int] = []
        self.last = None

    def forward(self, texts):
        if torch.is_grad_enabled():  # training passes (not the curve points' predictions)
            self.calls.append(len(texts))
        feats = torch.tensor([[t.count("a"), t.count("b")] for t in texts], dtype=torch.float32)
        self.last = self.head(feats)
        return self.last


@pytest.mark.parametrize("n", [64, 1500])
def test_two_epoch_finetune_step_fracs_are_the_references(n):
    """What logconf's schedule is fed on a full fine-tune (text inputs, 2 epochs, batch 32): the finished fraction of
    ALL optimiser steps, ``step / total``, one value per step, each from a single forward pass whose logits are the
    ones the loss (and so the hardening) sees. Where the batches tile the rows it is the reference's sequence
    exactly; with a short last batch per epoch (1,500 rows: 47 steps an epoch, 94 in all; the reference's
    ``1500 * 2 // 32 = 93``, its batches running across the epoch boundary) within one reference step of it."""
    texts = (["aab", "abb", "a", "bb"] * (n // 4 + 1))[:n]
    targets = np.eye(2, dtype=np.float32)[[int(t.count("b") > t.count("a")) for t in texts]]
    module, rec, seen = Forwards(), Recorder(), []

    def loss(logits, y, step_frac=0.0):
        seen.append(logits is module.last)
        return rec(logits, y, step_frac)

    cfg = TrainConfig(lr=1e-3, epochs=2, batch_size=32)
    out = fit(module, texts, targets, loss, cfg, seed=0, device="cpu")
    total = out["steps"]
    assert total == 2 * math.ceil(n / 32) and len(rec.fracs) == total == len(module.calls)
    assert rec.fracs == [s / total for s in range(total)] == pytest.approx(step_fracs_of(n, cfg))
    assert all(seen)  # the loss gets the logits of the step's one forward pass (nothing recomputed in eval mode)
    ref = oa_step_fracs(n, 2, 32)
    if n % 32 == 0:
        assert rec.fracs == ref
    else:
        assert total == len(ref) + 1
        assert max(abs(a - b) for a, b in zip(rec.fracs, ref)) < 1 / len(ref)
        assert rec.fracs[total // 2] == 0.5  # the second epoch starts half-way through the schedule


def step_fracs_of(n, cfg):
    from w2s_harness._engine.training import step_fracs

    return step_fracs(n, cfg)


def test_logconf_coefficient_over_a_two_epoch_run_is_the_references():
    """The coefficient logconf applies at every step of a 2-epoch run: openai's schedule (``warmup = "openai"``)
    evaluated at the reference's ``step / nsteps``, and EleutherAI's step-based ``min(1, step / warmup_steps)``."""
    from w2s_harness import create_loss

    texts = ["aab", "abb", "a", "bb"] * 32  # 128 rows: 4 steps an epoch, 8 in all
    targets = np.eye(2, dtype=np.float32)[[int(t.count("b") > t.count("a")) for t in texts]]
    cfg = TrainConfig(lr=1e-3, epochs=2, batch_size=32)
    for params, expected in (
        ({"warmup": "openai", "warmup_frac": 0.3}, [(f if f <= 0.3 else 1.0) * 0.5 for f in oa_step_fracs(128, 2, 32)]),
        ({"warmup_steps": 5}, [0.5 * min(1.0, s / 5) for s in range(8)]),
    ):
        spy = CoefSpy(create_loss("logconf", **params))
        fit(Forwards(), texts, targets, spy, cfg, seed=0, device="cpu")
        assert spy.coefs == pytest.approx(expected), params


class CoefSpy:
    """Passes a loss through, recording the coefficient it applies at every call."""

    def __init__(self, inner):
        self.inner, self.coefs = inner, []

    def set_total_steps(self, total):
        self.inner.set_total_steps(total)

    def __call__(self, logits, y, step_frac=0.0):
        self.coefs.append(self.inner.coef(step_frac))
        return self.inner(logits, y, step_frac=step_frac)


def test_warmup_steps_betas_and_clipping(monkeypatch):
    seen = []
    real_step = torch.optim.AdamW.step

    def step(self, *a, **k):
        group = self.param_groups[0]
        seen.append((group["lr"], group["betas"], float(torch.cat([p.grad.flatten() for p in group["params"]]).norm())))
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    import w2s_harness._engine.training as tr

    monkeypatch.setattr(tr, "_stepper", lambda optimizer: optimizer.step)
    x, _, t = separable(64)
    cfg = check_train_config("m", lr=0.1, epochs=2, batch_size=8, warmup_steps=3, adam_beta2=0.95,
                             max_grad_norm=1e-3)
    fit(zero_linear_head(8, 2), x * 100, t, xent, cfg, seed=0, device="cpu")
    assert [s[0] for s in seen] == pytest.approx([0.1 * lr_multiplier(s, 16, 3) for s in range(16)])
    assert all(s[1] == (0.9, 0.95) for s in seen)
    assert max(s[2] for s in seen) <= 1e-3 * (1 + 1e-5)  # clipped to the global norm
    with pytest.raises(ConfigError, match="warmup_frac or warmup_steps"):
        check_train_config("m", lr=1e-3, epochs=2, batch_size=4, warmup_frac=0.1, warmup_steps=3)
    with pytest.raises(ConfigError, match="adam_beta2 must be a number in"):
        check_train_config("m", lr=1e-3, epochs=2, batch_size=4, adam_beta2=1.0)
    with pytest.raises(ConfigError, match="val_metric only applies"):
        check_train_config("m", lr=1e-3, epochs=2, batch_size=4, val_metric="auroc")
    with pytest.raises(ConfigError, match='val_metric = .auroc. applies to solver = "adamw"'):
        check_train_config("m", lr=1e-3, epochs=2, batch_size=4, solver="lbfgs", early_stop="weak_val",
                           val_metric="auroc")
    probe = check_train_config("m", lr=1e-3, epochs=2, batch_size=4, solver=None, adamw_given=["warmup_steps"],
                               warmup_steps=2)
    assert probe.solver == "adamw"  # an AdamW-only setting keeps a linear probe on AdamW


def test_gradient_accumulation_gives_the_batch_gradient_and_calls_the_loss_per_microbatch():
    """``minibatch_size`` (Hugging Face's gradient accumulation): one loss call per micro-batch, weighted by its rows,
    the same update as one loss over the batch for a per-row loss (a short last micro-batch included)."""
    x, _, t = separable(90)
    base = TrainConfig(lr=5e-2, epochs=2, batch_size=16)
    heads, calls = [], []
    for micro in (None, 16, 5, 1):
        rec = []

        def loss(logits, y, step_frac=0.0, rec=rec):
            rec.append((logits.shape[0], step_frac))
            return xent(logits, y)

        head = zero_linear_head(8, 2)
        torch.nn.init.normal_(head.weight, generator=torch.Generator().manual_seed(0))
        out = fit(head, x, t, loss, TrainConfig(**{**base.__dict__, "minibatch_size": micro}), seed=0, device="cpu")
        assert out["steps"] == 12
        heads.append(head.weight.detach().clone())
        calls.append(rec)
    for w in heads[1:]:
        torch.testing.assert_close(w, heads[0], atol=1e-5, rtol=1e-4)
    assert [c[0] for c in calls[2][:4]] == [5, 5, 5, 1]  # 16 rows as 5 + 5 + 5 + 1
    assert len(calls[3]) == 2 * 90 and {c[0] for c in calls[3]} == {1}
    fracs = [c[1] for c in calls[3]]  # every micro-batch of a step sees that step's step_frac
    assert fracs[:16] == [0.0] * 16 and fracs[16] == 1 / 12


def test_early_stopping_by_auroc():
    from w2s_harness._engine.training import auroc

    x, y, t = separable(300)
    cfg = TrainConfig(lr=5e-2, epochs=4, batch_size=32, early_stop="weak_val", val_metric="auroc")
    head = zero_linear_head(8, 2)
    out = fit(head, x[:200], t[:200], xent, cfg, seed=0, device="cpu", val_inputs=x[200:], val_targets=t[200:])
    points = out["curve"]
    assert all("val_auroc" in p for p in points)
    best = max(range(len(points)), key=lambda i: (points[i]["val_auroc"], -i))
    assert out["early_stop"]["selected_step"] == points[best]["step"]
    assert out["early_stop"]["val_metric"] == "auroc"
    assert out["early_stop"]["val_auroc"] == points[best]["val_auroc"]
    assert out["early_stop"]["val_acc"] == points[best]["val_acc"]
    assert auroc(predict_proba(head, x[200:], device="cpu"), y[200:]) == pytest.approx(points[best]["val_auroc"])
    from w2s_harness._contracts.errors import InputError

    with pytest.raises(InputError, match="needs both classes"):
        fit(zero_linear_head(8, 2), x[:200], t[:200], xent, cfg, seed=0, device="cpu", val_inputs=x[200:210],
            val_targets=np.tile(t[200:201], (10, 1)))
