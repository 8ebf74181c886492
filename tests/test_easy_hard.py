"""Easy-to-hard splits: easy train1/train2, hard test, cut from the usual split of the same seed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from w2s_harness import Component, ConfigError, DataError, plugin_manager
from w2s_harness._cli.cli import main
from w2s_harness._data.difficulty import EasyToHard, create, labels, parts

POS = ["good", "great", "excellent", "happy", "love", "wonderful", "best", "nice"]
NEG = ["bad", "terrible", "awful", "sad", "hate", "worst", "horrible", "poor"]
FILL = ["the", "movie", "was", "a", "really", "plot", "and", "actors", "it", "film"]


def make_csv(path: Path, n: int = 200, seed: int = 0) -> Path:
    """Reviews with a ``rating`` difficulty in [0, 100): harder rows carry fewer sentiment cues."""
    rng = np.random.default_rng(seed)
    rows = ["text,label,rating"]
    for _ in range(n):
        label = int(rng.integers(0, 2))
        rating = int(rng.integers(0, 100))
        words = list(rng.choice(FILL, size=6))
        cue = POS if label else NEG
        for _ in range(3 if rating < 50 else 1):
            words.insert(int(rng.integers(0, len(words))), str(rng.choice(cue)))
        if rng.random() < 0.1:
            label = 1 - label
        rows.append(f"{' '.join(words)},{'pos' if label else 'neg'},{rating}")
    path.write_text("\n".join(rows) + "\n")
    return path


def ratings(path: Path) -> np.ndarray:
    return np.array([int(line.rsplit(",", 1)[1]) for line in path.read_text().splitlines()[1:]], dtype=float)


@pytest.fixture(scope="module")
def csv(tmp_path_factory) -> Path:
    return make_csv(tmp_path_factory.mktemp("e2h") / "reviews.csv")


def e2h(csv: Path, **split) -> EasyToHard:
    comp = Component("local", {"path": str(csv), "n_test": 60, "difficulty_column": "rating", **split})
    ds = create(plugin_manager(), comp)
    assert isinstance(ds, EasyToHard)
    return ds


def usual(csv: Path):
    return plugin_manager().create("dataset", "local", path=str(csv), n_test=60)


def test_parts_are_the_usual_split_filtered_by_the_thresholds(csv):
    ds, base = e2h(csv, easy_max=40, hard_min=70), usual(csv)
    d = ratings(csv)  # the file's rows: load() uses every row, so positions are row ids
    assert len(ds.load()) == len(d)
    np.testing.assert_array_equal(ds.difficulty(), d)
    for seed in (0, 1, 2):
        got, ref = ds.splits(seed), base.splits(seed)
        np.testing.assert_array_equal(got.train1, ref.train1[d[ref.train1] <= 40])
        np.testing.assert_array_equal(got.train2, ref.train2[d[ref.train2] <= 40])
        np.testing.assert_array_equal(got.test, ref.test[d[ref.test] >= 70])
        assert d[got.train1].max() <= 40 and d[got.train2].max() <= 40 and d[got.test].min() >= 70
        assert len(got.train1) > 10 and len(got.test) > 5


def test_split_is_reproducible_per_seed(csv):
    a, b = e2h(csv, easy_max=40, hard_min=70), e2h(csv, easy_max=40, hard_min=70)
    for seed in (0, 3):
        sa, sb = a.splits(seed), b.splits(seed)
        for part in ("train1", "train2", "test"):
            np.testing.assert_array_equal(getattr(sa, part), getattr(sb, part))
    # the seed reshuffles train1/train2; the hard test rows are the same for every seed (test_seed fixes them)
    assert not np.array_equal(a.splits(0).train1, a.splits(3).train1)
    np.testing.assert_array_equal(a.splits(0).test, a.splits(3).test)


def test_quantile_thresholds_are_quantiles_of_the_used_rows(csv):
    ds = e2h(csv, easy_quantile=0.3, hard_quantile=0.8)
    d = ratings(csv)
    assert ds.thresholds() == (pytest.approx(np.quantile(d, 0.3)), pytest.approx(np.quantile(d, 0.8)))
    s = ds.splits(0)
    assert d[s.train1].max() <= np.quantile(d, 0.3) and d[s.test].min() >= np.quantile(d, 0.8)
    mixed = e2h(csv, easy_max=30, hard_quantile=0.8)
    assert mixed.thresholds() == (30.0, pytest.approx(np.quantile(d, 0.8)))


def test_identity_differs_from_the_usual_split_and_config_expands_to_both(csv):
    comp = Component("local", {"path": str(csv), "difficulty_column": "rating", "easy_max": 40, "hard_min": 70})
    plain, hard = parts(comp)
    assert "easy_max" not in plain.params and plain.params["difficulty_column"] == "rating"
    assert hard.params == comp.params
    assert labels([plain, hard]) == ["local", "local[easy-to-hard]"]
    assert labels([plain, hard, plain]) == ["local#1", "local#1[easy-to-hard]", "local#2"]
    ident = e2h(csv, easy_max=40, hard_min=70).identity()
    assert ident["split"]["easy_max"] == 40 and ident["fingerprint"] == usual(csv).identity()["fingerprint"]


@pytest.mark.parametrize("split, message", [
    ({"easy_max": 50, "hard_min": 50}, "easy_max (50) must be below hard_min (50)"),
    ({"easy_max": 10, "easy_quantile": 0.2, "hard_min": 50}, "give easy_max or easy_quantile, not both"),
    ({"easy_max": 10}, "needs the hard threshold too: hard_min = <value> or hard_quantile"),
    ({"easy_quantile": 1.5, "hard_min": 50}, "easy_quantile must be a number in [0, 1] or omitted, got 1.5"),
    ({"easy_quantile": 0.6, "hard_quantile": 0.4}, "easy_quantile (0.6) must be below hard_quantile (0.4)"),
    ({"easy_max": "low", "hard_min": 50}, "easy_max must be a finite number or omitted, got 'low'"),
])
def test_bad_thresholds_are_one_line_config_errors(csv, split, message):
    with pytest.raises(ConfigError) as err:
        e2h(csv, **split)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_column_and_empty_parts_are_one_line_data_errors(csv, tmp_path):
    with pytest.raises(DataError, match=r"no difficulty values; set its difficulty_column"):
        create(plugin_manager(), Component("local", {"path": str(csv), "easy_max": 1, "hard_min": 2})).splits(0)
    with pytest.raises(DataError, match=r"no column 'stars' \(difficulty_column\); available columns: text, label"):
        create(plugin_manager(), Component("local", {"path": str(csv), "difficulty_column": "stars",
                                                     "easy_max": 1, "hard_min": 2})).splits(0)
    with pytest.raises(DataError, match=r"leaves test empty for seed 0 \(no row with rating >= 500\); lower hard_min"):
        e2h(csv, easy_max=40, hard_min=500).splits(0)
    with pytest.raises(DataError, match=r"leaves train1 empty .*rating <= -1.*raise easy_max"):
        e2h(csv, easy_max=-1, hard_min=70).splits(0)
    text = tmp_path / "t.csv"
    text.write_text("text,label,rating\na,x,easy\nb,y,hard\nc,x,easy\nd,y,hard\n")
    with pytest.raises(DataError, match=r"the difficulty must be a number, found 'easy' \(4 such rows\)"):
        create(plugin_manager(), Component("local", {"path": str(text), "n_test": 1, "difficulty_column": "rating",
                                                     "easy_max": 1, "hard_min": 2})).difficulty()


def test_a_part_left_empty_fails_validate_before_training(csv, tmp_path, capsys):
    cfg = write_config(tmp_path, csv, "easy_max = 40\nhard_min = 500")
    assert main(["validate", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "leaves test empty" in err and "Traceback" not in err


def test_validate_lists_both_splits(csv, tmp_path, capsys):
    cfg = write_config(tmp_path, csv, "easy_quantile = 0.3\nhard_quantile = 0.7")
    for offline in ([], ["--offline"]):
        assert main(["validate", "--config", str(cfg), *offline]) == 0
        assert ("16 stages over 2 seeds and 2 dataset splits; experiments: local:naive/xent, "
                "local[easy-to-hard]:naive/xent") in capsys.readouterr().out


def write_config(tmp_path: Path, csv: Path, thresholds: str) -> Path:
    cfg = tmp_path / "run.toml"
    cfg.write_text(f"""
[dataset]
name = "local"
path = "{csv.as_posix()}"
n_test = 60
difficulty_column = "rating"
{thresholds}

[weak]
name = "glove-bow"
epochs = 2

[strong]
name = "glove-bow"
epochs = 10
lr = 0.01

[loss]
name = "xent"

[strategy]
name = "naive"

[run]
seeds = [0, 1]
device = "cpu"
workers = 1
output_dir = "{(tmp_path / 'out').as_posix()}"
""")
    return cfg


def test_end_to_end_run_reports_both_splits(csv, tmp_path, capsys):
    cfg = write_config(tmp_path, csv, "easy_max = 40\nhard_min = 70")
    code = main(["run", "--config", str(cfg), "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    res = json.loads(out.out)
    rows = {e["name"]: e for e in res["experiments"]}
    assert set(rows) == {"local:naive/xent", "local[easy-to-hard]:naive/xent"}
    assert rows["local:naive/xent"]["split"] == "random" and rows["local:naive/xent"]["dataset"] == "local"
    hard = rows["local[easy-to-hard]:naive/xent"]
    assert hard["split"] == "easy-to-hard" and hard["dataset"] == "local[easy-to-hard]"
    # each stage of the easy-to-hard row trained on the easy rows of the usual split's part, counted from the file
    d, base = ratings(csv), usual(csv)
    stages = {s["id"]: s for s in res["stages"]}
    for i, seed in enumerate((0, 1)):
        ref = base.splits(seed)
        weak = stages[hard["stage_ids"]["weak"][i]]["metrics"]
        ceiling = stages[hard["stage_ids"]["ceiling"][i]]["metrics"]
        assert weak["n_train"] == int((d[ref.train1] <= 40).sum())
        assert ceiling["n_train"] == int((d[ref.train2] <= 40).sum())
        plain = stages[rows["local:naive/xent"]["stage_ids"]["weak"][i]]["metrics"]
        assert plain["n_train"] == len(ref.train1)
        for role in ("weak", "ceiling", "transfer"):
            assert 0.0 <= hard[f"{role}_acc"]["per_seed"][i] <= 1.0
    assert main(["report", str(tmp_path / "out"), "--no-plots"]) == 0
    capsys.readouterr()
    # the report's dataset column names the split (rich would read "[easy-to-hard]" as markup if not escaped)
    import io

    from rich.console import Console

    from w2s_harness import Results
    from w2s_harness._results.report import render

    buf = io.StringIO()
    render(Results.from_dict(res), Console(file=buf, width=250))
    table_rows = [line for line in buf.getvalue().splitlines() if line.startswith("│")]
    assert [line.split("│")[1].strip() for line in table_rows] == ["local", "local[easy-to-hard]"]


def test_a_choice_file_splits_on_its_difficulty_column(tmp_path):
    """Choice datasets carry a difficulty too (a preference file here; lichess_puzzles' rating likewise)."""
    path = tmp_path / "pairs.csv"
    path.write_text("prompt,chosen,rejected,level\n" + "".join(f"q{i},good {i},bad {i},{i}\n" for i in range(40)))
    ds = create(plugin_manager(), Component("local", {"path": str(path), "chosen_column": "chosen",
                                                      "rejected_column": "rejected", "difficulty_column": "level",
                                                      "n_test": 16, "easy_max": 19, "hard_min": 25}))
    base = plugin_manager().create("dataset", "local", path=str(path), chosen_column="chosen",
                                   rejected_column="rejected", difficulty_column="level", n_test=16)
    d = np.arange(40, dtype=float)  # every row is used, in file order
    np.testing.assert_array_equal(ds.difficulty(), d)
    got, ref = ds.splits(0), base.splits(0)
    np.testing.assert_array_equal(got.train1, ref.train1[d[ref.train1] <= 19])
    np.testing.assert_array_equal(got.test, ref.test[d[ref.test] >= 25])
