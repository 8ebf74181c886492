"""The feature cache's chunked, resumable, locked encoder pass (w2s_harness._data.features)."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from w2s_harness._contracts.components import TextData
from w2s_harness._contracts.errors import ConfigError, W2SError
from w2s_harness._data.features import FeatureCache, cache_name
from w2s_harness._execution.interrupts import StopRequested

N = 300
CHUNK = 64
KEYS = ("fake|layer=1", "fake|layer=2")


def _texts(n: int = N) -> list[str]:
    words = ["good", "bad", "movie", "great", "plot", "the", "awful", "fun", "acting", "boring"]
    return [
        " ".join(words[(i * k + k * k) % len(words)] for k in range(1, 2 + i % 7)) + f" {i}" for i in range(n)
    ]


def _data(n: int = N, fp: str = "fp") -> TextData:
    return TextData(_texts(n), np.arange(n) % 2, ["neg", "pos"], fp)


class Fake:
    """Per-text features (they depend on the text alone); every layer's key in one call, like ``hf:``.

    Records the number of texts of each call in ``calls`` and, with ``log``, appends each text's row id to a
    file (shared by processes). ``fail_after``: raise on the call after that many; ``extra_from``: from that
    call on, also return an extra key.
    """

    name = "fake"

    def __init__(self, layer=1, log=None, fail_after=None, extra_from=None, widths=(3, 3)):
        self.layer = layer
        self.log = log
        self.fail_after = fail_after
        self.extra_from = extra_from
        self.widths = widths
        self.calls: list[int] = []

    def feature_key(self):
        return KEYS[self.layer - 1]

    def features(self, texts, progress=None, device=None):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("killed mid-pass")
        self.calls.append(len(texts))
        if self.log is not None:
            with open(self.log, "a") as f:
                f.write("".join(t.rsplit(" ", 1)[1] + "\n" for t in texts))
        base = np.array([[len(t), sum(map(ord, t)) % 997, t.count("o")] for t in texts], dtype=np.float64)
        out = {}
        for layer, (key, w) in enumerate(zip(KEYS, self.widths), start=1):
            out[key] = (np.resize(base, (len(texts), w)) * layer + 0.25).astype(np.float32)
        if self.extra_from is not None and len(self.calls) > self.extra_from:
            out["fake|extra"] = np.zeros((len(texts), 2), dtype=np.float32)
        if progress is not None:
            progress(len(texts))
        return out


def _chunks(root: Path, key=KEYS[0], fp="fp") -> list[str]:
    d = root / cache_name(key, fp).replace(".npy", ".partial")
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def _reference(tmp_path, data=None):
    data = data if data is not None else _data()
    return FeatureCache(tmp_path / "ref", chunk_rows=10**6).get(Fake(), data)


def test_chunked_equals_unchunked_and_cleans_up(tmp_path):
    data = _data()
    ref_cache = FeatureCache(tmp_path / "ref", chunk_rows=10**6)
    whole = Fake()
    ref = ref_cache.get(whole, data)
    assert whole.calls == [N]
    cache = FeatureCache(tmp_path / "c", chunk_rows=CHUNK)
    model, seen = Fake(), []
    x = cache.get(model, data, progress=seen.append)
    assert model.calls == [64, 64, 64, 64, 44] and sum(seen) == N
    np.testing.assert_array_equal(x, ref)
    assert x.dtype == np.float32 and x.shape == (N, 3)
    for k in KEYS:  # every layer of the pass is stored, and equal
        np.testing.assert_array_equal(np.load(cache.path(k, data)), np.load(ref_cache.path(k, data)))
    names = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert names == sorted([".locks", *(cache_name(k, "fp") for k in KEYS)])  # no partial dir, no temp files
    other = Fake(layer=2)
    assert (cache.get(other, data) == np.load(ref_cache.path(KEYS[1], data))).all() and other.calls == []


def test_glove_bow_chunked_equals_unchunked(tmp_path):
    import w2s_harness

    model = w2s_harness.create_model("glove-bow")
    data = _data(400)
    whole = FeatureCache(tmp_path / "whole", chunk_rows=10**6).get(model, data)
    chunked = FeatureCache(tmp_path / "chunked", chunk_rows=CHUNK).get(model, data)
    assert chunked.shape == (400, 50) and np.abs(chunked).sum() > 0
    np.testing.assert_array_equal(chunked, whole)


def test_resume_after_a_crash_computes_only_the_missing_rows(tmp_path):
    data = _data()
    with pytest.raises(RuntimeError, match="killed"):
        FeatureCache(tmp_path, chunk_rows=CHUNK).get(Fake(fail_after=2), data)
    assert _chunks(tmp_path) == ["0-64.npz", "64-128.npz"]
    assert not FeatureCache(tmp_path).contains(Fake(), data)
    model, seen = Fake(), []
    x = FeatureCache(tmp_path, chunk_rows=CHUNK).get(model, data, progress=seen.append)
    assert sum(model.calls) == N - 128 and model.calls == [64, 64, 44]
    assert sum(seen) == N  # the saved chunks advance the bar too
    np.testing.assert_array_equal(x, _reference(tmp_path))
    assert _chunks(tmp_path) == []


def test_resume_with_another_chunk_size_reuses_the_saved_chunks(tmp_path):
    data = _data()
    with pytest.raises(RuntimeError):
        FeatureCache(tmp_path, chunk_rows=CHUNK).get(Fake(fail_after=2), data)
    model = Fake()
    x = FeatureCache(tmp_path, chunk_rows=100).get(model, data)
    assert model.calls == [100, 72]
    np.testing.assert_array_equal(x, _reference(tmp_path))


def test_corrupt_truncated_and_wrong_chunks_are_recomputed(tmp_path):
    data = _data()
    with pytest.raises(RuntimeError):
        FeatureCache(tmp_path, chunk_rows=CHUNK).get(Fake(fail_after=4), data)
    part = tmp_path / cache_name(KEYS[0], "fp").replace(".npy", ".partial")
    assert _chunks(tmp_path) == ["0-64.npz", "128-192.npz", "192-256.npz", "64-128.npz"]
    blob = (part / "0-64.npz").read_bytes()
    (part / "0-64.npz").write_bytes(blob[: len(blob) // 2])  # truncated (killed writer, full disk)
    (part / "64-128.npz").write_bytes(b"garbage")
    ten_rows = np.ones((10, 3), np.float32)
    np.savez(part / "128-192.npz", keys=np.array(KEYS), a0=ten_rows, a1=ten_rows)  # wrong row count
    (part / "0-64.npz.123.tmp").write_bytes(b"half a temp file")
    model = Fake()
    x = FeatureCache(tmp_path, chunk_rows=CHUNK).get(model, data)
    assert model.calls == [64, 64, 64, 44]  # 192-256 was fine
    np.testing.assert_array_equal(x, _reference(tmp_path))
    assert not part.exists()


def test_stale_chunks_with_other_keys_are_dropped(tmp_path):
    """Saved chunks that agree with each other but not with what the model returns now: start over."""
    data = _data()
    with pytest.raises(RuntimeError):
        FeatureCache(tmp_path, chunk_rows=CHUNK).get(Fake(fail_after=2, widths=(3, 5)), data)
    model = Fake()
    x = FeatureCache(tmp_path, chunk_rows=CHUNK).get(model, data)
    assert sum(model.calls) == N + 64  # the first computed chunk disagreed; the pass started again
    np.testing.assert_array_equal(x, _reference(tmp_path))
    assert np.load(FeatureCache(tmp_path).path(KEYS[1], data)).shape == (N, 3)


def test_check_stop_leaves_one_chunk_and_the_next_call_resumes(tmp_path):
    data = _data()
    stops = []

    def check_stop():
        stops.append(len(_chunks(tmp_path)))
        raise StopRequested(15)

    cache = FeatureCache(tmp_path, chunk_rows=CHUNK)
    with pytest.raises(StopRequested):
        cache.get(Fake(), data, check_stop=check_stop)
    assert stops == [1] and _chunks(tmp_path) == ["0-64.npz"]  # called after the chunk was saved
    assert not cache.path(KEYS[0], data).exists()
    calls = []
    model = Fake()
    x = cache.get(model, data, check_stop=lambda: calls.append(1))
    assert model.calls == [64, 64, 64, 44] and len(calls) == 4
    np.testing.assert_array_equal(x, _reference(tmp_path))


def test_mismatched_keys_between_chunks_is_a_one_line_error(tmp_path):
    with pytest.raises(W2SError) as e:
        FeatureCache(tmp_path, chunk_rows=CHUNK).get(Fake(extra_from=1), _data())
    msg = str(e.value)
    assert "\n" not in msg and "'fake'" in msg and "rows 64-128" in msg and "fake|extra" in msg

    class Wider(Fake):
        def features(self, texts, progress=None, device=None):
            out = super().features(texts, progress, device)
            if len(self.calls) > 1:
                out[KEYS[0]] = np.zeros((len(texts), 4), np.float32)
            return out

    with pytest.raises(W2SError, match="has width 4, not 3"):
        FeatureCache(tmp_path / "w", chunk_rows=CHUNK).get(Wider(), _data())


def test_shape_checks_per_chunk_and_empty_data(tmp_path):
    class Short(Fake):
        def features(self, texts, progress=None, device=None):
            return {KEYS[0]: np.zeros((len(texts) - 1, 3))}

    with pytest.raises(W2SError, match=r"shape \(63, 3\), expected \(64, d\)"):
        FeatureCache(tmp_path, chunk_rows=CHUNK).get(Short(), _data())
    x = FeatureCache(tmp_path / "e", chunk_rows=CHUNK).get(Fake(), _data(0))
    assert x.shape == (0, 3) and x.dtype == np.float32


@pytest.mark.parametrize("bad", [0, -3, 1.5, True, "64", None])
def test_chunk_rows_must_be_a_positive_int(tmp_path, bad):
    with pytest.raises(ConfigError, match="chunk_rows must be a positive integer"):
        FeatureCache(tmp_path, chunk_rows=bad)
    assert FeatureCache(tmp_path, chunk_rows=np.int64(5)).chunk_rows == 5


# ------------------------------------------------------------------------------- two processes at once


class SlowFake(Fake):
    def features(self, texts, progress=None, device=None):
        import time

        time.sleep(0.02)
        return super().features(texts, progress, device)


def _worker(root, log, out, barrier):
    barrier.wait(timeout=30)
    x = FeatureCache(root, chunk_rows=CHUNK).get(SlowFake(log=log), _data())
    np.save(out, x)


def test_two_processes_compute_each_row_once(tmp_path):
    ctx = multiprocessing.get_context("fork")
    root, log = tmp_path / "features", tmp_path / "calls.log"
    barrier = ctx.Barrier(2)
    outs = [tmp_path / f"out{i}.npy" for i in range(2)]
    procs = [ctx.Process(target=_worker, args=(root, log, out, barrier)) for out in outs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    rows = sorted(int(line) for line in log.read_text().split())
    assert rows == list(range(N))  # every row embedded exactly once, by one of the two
    a, b = np.load(outs[0]), np.load(outs[1])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, _reference(tmp_path))


class Dying(SlowFake):
    def features(self, texts, progress=None, device=None):
        if len(self.calls) == 3:
            os._exit(9)  # like kill -9: no exception handlers, no context managers' exits
        return super().features(texts, progress, device)


def _killed_worker(root, log):
    FeatureCache(root, chunk_rows=CHUNK).get(Dying(log=log), _data())


def test_a_waiter_takes_over_from_a_dead_holder(tmp_path):
    """A holder that dies releases the lock (flock); the next caller resumes from its chunks."""
    ctx = multiprocessing.get_context("fork")
    root, log = tmp_path / "features", tmp_path / "calls.log"
    p = ctx.Process(target=_killed_worker, args=(root, log))
    p.start()
    p.join(timeout=60)
    assert p.exitcode == 9 and len(_chunks(root)) == 3
    x = FeatureCache(root, chunk_rows=CHUNK).get(SlowFake(log=log), _data())
    assert sorted(int(line) for line in log.read_text().split()) == list(range(N))
    np.testing.assert_array_equal(x, _reference(tmp_path))
    assert os.listdir(root / ".locks")  # the lock file stays (empty); it is not a cache entry
