"""Linear-probe heads per second: mini-batch AdamW vs full-batch L-BFGS on default-sized features, in one run.

Run: ``pytest benchmarks/test_bench_probe.py --benchmark-only`` (tox -e bench). The default run's heads train on
about 9.2k rows (a tweets train split): glove-bow's 50-d features (real, from the wheel) and MiniLM's 384-d ones.
The 384-d case uses the same tweets' GloVe features through a fixed random tanh projection to 384 dimensions
(dense, correlated features of the default strong model's width, without a 5-minute encoder pass). Each case
times the L-BFGS head with pytest-benchmark and the default AdamW head (10 epochs, batch 32) in the same session,
and records both throughputs and their ratio in ``extra_info`` (``lbfgs_over_adamw`` > 1: L-BFGS is faster).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

N_ROWS = 9256  # train2 of the default tweets split (23,140 rows, 20% test, the rest halved)


@pytest.fixture(scope="module")
def glove_tweets():
    from w2s_harness import create_dataset, create_model

    data = create_dataset("tweets-sentiment").load()
    spec = create_model("glove-bow")
    x = spec.features(data.texts[:N_ROWS])[spec.feature_key()]
    return x, np.asarray(data.labels[:N_ROWS])


def _features(glove_tweets, width: int):
    x, y = glove_tweets
    if width == x.shape[1]:
        return x, y
    proj = np.random.default_rng(0).normal(size=(x.shape[1], width)).astype(np.float32) / np.sqrt(x.shape[1])
    return np.tanh(x @ proj * 4.0).astype(np.float32), y


@pytest.mark.parametrize(("width", "adamw_lr", "C"), [(50, 1e-3, 1.0), (384, 1e-2, 0.01)],
                         ids=["glove-50d", "minilm-384d"])
def test_heads_per_second_lbfgs_vs_adamw(benchmark, glove_tweets, width, adamw_lr, C):
    """Each case with its model's defaults: glove-bow (AdamW lr 1e-3; C = 1) and an hf: probe (lr 1e-2; C = 0.01)."""
    import torch

    from w2s_harness import create_loss
    from w2s_harness._contracts.components import check_train_config
    from w2s_harness._engine.training import fit, zero_linear_head

    x, y = _features(glove_tweets, width)
    targets = np.eye(2, dtype=np.float32)[y]
    cpu = torch.device("cpu")
    adamw = check_train_config("bench", lr=adamw_lr, epochs=10, batch_size=32)
    lbfgs = check_train_config("bench", lr=adamw_lr, epochs=10, batch_size=32, solver="lbfgs", C=C)

    def head(cfg):
        module = zero_linear_head(width, 2)
        return fit(module, x, targets, create_loss("xent"), cfg, seed=0, device=cpu)

    head(lbfgs)  # imports and first-call set-up outside the timed rounds
    t0 = time.perf_counter()
    head(adamw)
    adamw_s = time.perf_counter() - t0
    history = benchmark.pedantic(lambda: head(lbfgs), rounds=3, iterations=1)
    lbfgs_s = benchmark.stats.stats.mean
    assert history["converged"]
    benchmark.extra_info.update({
        "rows": len(x), "width": width, "lbfgs_heads_per_s": 1 / lbfgs_s, "adamw_heads_per_s": 1 / adamw_s,
        "lbfgs_over_adamw": adamw_s / lbfgs_s, "lbfgs_iterations": history["steps"],
    })


@pytest.mark.parametrize(("width", "C"), [(50, 1.0), (384, 0.01)], ids=["glove-50d", "minilm-384d"])
@pytest.mark.parametrize("loss_name", ["xent", "logconf"])
def test_lbfgs_curve_points_overhead(benchmark, glove_tweets, width, C, loss_name):
    """An L-BFGS head with the default curve (a point every ``CURVE_EVERY`` iterations, scored on a test set of
    the default run's size) against the same head with points only at the ends of its continuation phases
    (``curve_every`` beyond the solve: every phase's ``LBFGS.step`` runs uninterrupted, as without curves).
    ``extra_info["default_over_phase_ends"]`` is the time ratio (> 1: what the default curve costs)."""
    import torch

    from w2s_harness import create_loss
    from w2s_harness._contracts.components import check_train_config
    from w2s_harness._engine.training import fit, zero_linear_head

    x, y = _features(glove_tweets, width)
    rng = np.random.default_rng(0)
    targets = np.clip(np.eye(2, dtype=np.float32)[y] * 0.6 + 0.2 + rng.normal(0, 0.05, (len(y), 1)), 0, 1)
    targets = (targets / targets.sum(1, keepdims=True)).astype(np.float32)  # soft labels, as a transfer's
    test_x, test_y = x[: N_ROWS // 2], y[: N_ROWS // 2]  # about the default test split's 4.6k rows
    cpu = torch.device("cpu")

    def head(every):
        cfg = check_train_config("bench", lr=1e-3, epochs=10, batch_size=32, solver="lbfgs", C=C, curve_every=every)
        return fit(zero_linear_head(width, 2), x, targets, create_loss(loss_name), cfg, seed=0, device=cpu,
                   eval_inputs=test_x, eval_labels=test_y)

    head(0)
    t0 = time.perf_counter()
    for _ in range(3):  # as many rounds as the benchmark's
        plain = head(10**9)
    plain_s = (time.perf_counter() - t0) / 3
    history = benchmark.pedantic(lambda: head(0), rounds=3, iterations=1)
    default_s = benchmark.stats.stats.mean
    assert history["steps"] == plain["steps"]
    benchmark.extra_info.update({
        "rows": len(x), "width": width, "iterations": history["steps"], "points": len(history["curve"]),
        "default_s": default_s, "phase_ends_s": plain_s, "default_over_phase_ends": default_s / plain_s,
    })
