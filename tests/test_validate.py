"""The public validator family (check_number, check_int, check_bool, check_choice, check_str, check_path): bounds,
conversions, exact one-line messages, and the built-in components of every kind raising through it."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

import w2s_harness
from w2s_harness import (
    ConfigError,
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_path,
    check_str,
)

OWNER = "dataset 'tweets'"


def message(fn, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args, **kwargs)
    text = str(info.value)
    assert "\n" not in text
    return text


# ------------------------------------------------------------------------------------------------ check_number


@pytest.mark.parametrize("lo_open,hi_open,brackets", [(False, False, "[]"), (True, False, "(]"),
                                                       (False, True, "[)"), (True, True, "()")])
def test_check_number_bounds_inclusive_unless_open(lo_open, hi_open, brackets):
    kw = {"owner": OWNER, "lo": 0, "hi": 1, "lo_open": lo_open, "hi_open": hi_open}
    assert check_number(0.5, "keep_frac", **kw) == 0.5
    for edge, is_open in ((0, lo_open), (1, hi_open)):
        if is_open:
            assert message(check_number, edge, "keep_frac", **kw) == (
                f"dataset 'tweets': keep_frac must be a number in {brackets[0]}0, 1{brackets[1]}, got {edge}")
        else:
            assert check_number(edge, "keep_frac", **kw) == float(edge)
    for outside in (-0.001, 1.5):
        assert message(check_number, outside, "keep_frac", **kw).endswith(
            f"must be a number in {brackets[0]}0, 1{brackets[1]}, got {outside}")


def test_check_number_example_message_from_the_issue():
    assert message(check_number, 1.5, "keep_frac", owner=OWNER, lo=0, hi=1, lo_open=True) == (
        "dataset 'tweets': keep_frac must be a number in (0, 1], got 1.5")


def test_check_number_one_sided_bounds():
    assert check_number(0, "w", owner="o", lo=0) == 0.0
    assert message(check_number, -1, "w", owner="o", lo=0) == "o: w must be a number >= 0, got -1"
    assert message(check_number, 0, "C", owner="model 'm'", lo=0, lo_open=True) == (
        "model 'm': C must be a number > 0, got 0")
    assert check_number(1e-12, "C", owner="o", lo=0, lo_open=True) == 1e-12
    assert check_number(5, "x", owner="o", hi=5) == 5.0
    assert message(check_number, 5, "x", owner="o", hi=5, hi_open=True) == "o: x must be a number < 5, got 5"
    assert message(check_number, 6, "x", owner="o", hi=5) == "o: x must be a number <= 5, got 6"
    assert message(check_number, 1, "x", owner="o", lo=0.25, hi=0.999) == (
        "o: x must be a number in [0.25, 0.999], got 1")
    assert message(check_number, 1, "x", owner="o", lo=0.0, hi=0.5) == "o: x must be a number in [0, 0.5], got 1"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_check_number_rejects_non_finite(bad):
    assert message(check_number, bad, "x", owner="o") == f"o: x must be a finite number, got {bad!r}"
    assert message(check_number, bad, "C", owner="o", lo=0, lo_open=True) == f"o: C must be a number > 0, got {bad!r}"


@pytest.mark.parametrize("bad", [True, False, "0.5", None, [0.5], 1 + 0j])
def test_check_number_rejects_bools_strings_and_non_numbers(bad):
    assert message(check_number, bad, "x", owner="o", lo=0, hi=1) == (
        f"o: x must be a number in [0, 1], got {bad!r}")


def test_check_number_converts_to_float():
    for value in (1, np.int64(1), np.float32(1.0), 1.0):
        out = check_number(value, "x", owner="o")
        assert type(out) is float and out == 1.0
    assert check_number(None, "x", owner="o", optional=True) is None
    assert message(check_number, "a", "x", owner="o", lo=0, optional=True) == (
        "o: x must be a number >= 0 or omitted, got 'a'")
    assert message(check_number, None, "x", owner="o") == "o: x must be a finite number, got None"


# -------------------------------------------------------------------------------------------------- check_int


def test_check_int_bounds_are_inclusive():
    assert check_int(1, "bags", owner="o", lo=1) == 1
    assert check_int(3, "n", owner="o", lo=1, hi=3) == 3
    assert message(check_int, 0, "bags", owner="strategy 'ensemble'", lo=1) == (
        "strategy 'ensemble': bags must be an integer >= 1, got 0")
    assert message(check_int, 4, "n", owner="o", lo=1, hi=3) == "o: n must be an integer in [1, 3], got 4"
    assert message(check_int, 4, "n", owner="o", hi=3) == "o: n must be an integer <= 3, got 4"
    assert check_int(-7, "n", owner="o") == -7


@pytest.mark.parametrize("bad", [True, False, 2.0, 2.5, "2", None, float("nan")])
def test_check_int_rejects_bools_floats_and_strings(bad):
    assert message(check_int, bad, "n", owner="o", lo=0) == f"o: n must be an integer >= 0, got {bad!r}"
    assert message(check_int, bad, "n", owner="o") == f"o: n must be an integer, got {bad!r}"


def test_check_int_converts_numpy_and_allows_none_when_optional():
    out = check_int(np.int64(5), "n", owner="o", lo=1)
    assert type(out) is int and out == 5
    assert check_int(None, "layers", owner="o", lo=1, optional=True) is None
    assert message(check_int, 0, "layers", owner="model 'hf:x'", lo=1, optional=True) == (
        "model 'hf:x': layers must be an integer >= 1 or omitted, got 0")


# ------------------------------------------------------------------------------------- check_bool, check_choice


def test_check_bool():
    assert check_bool(True, "b", owner="o") is True
    assert check_bool(False, "b", owner="o") is False
    for bad in (0, 1, "true", None, np.bool_(True)):
        assert message(check_bool, bad, "balance", owner="loss 'logconf'") == (
            f"loss 'logconf': balance must be true or false, got {bad!r}")
    assert check_bool(None, "b", owner="o", optional=True) is None
    assert message(check_bool, "no", "b", owner="o", optional=True) == "o: b must be true or false or omitted, got 'no'"


def test_check_choice_accepts_members_and_suggests_near_misses():
    assert check_choice("mean", "how", ("mean", "weighted"), owner="o") == "mean"
    assert message(check_choice, "foward", "direction", ("forward", "reverse"), owner="loss 'kl'") == (
        "loss 'kl': direction must be one of forward, reverse, got 'foward'; did you mean 'forward'?")
    # nothing close: no suggestion
    assert message(check_choice, "sgd", "solver", ("adamw", "lbfgs"), owner="model 'm'") == (
        "model 'm': solver must be one of adamw, lbfgs, got 'sgd'")
    # non-string values: no suggestion, and bool never matches 1
    assert message(check_choice, 3, "k", (1, 2), owner="o") == "o: k must be one of 1, 2, got 3"
    assert message(check_choice, True, "k", (1, 2), owner="o") == "o: k must be one of 1, 2, got True"
    assert check_choice(2, "k", (1, 2), owner="o") == 2
    assert message(check_choice, ["mean"], "how", ("mean",), owner="o") == "o: how must be one of mean, got ['mean']"
    assert check_choice(None, "pooling", ("mean", "cls"), owner="o", optional=True) is None
    assert message(check_choice, "lft", "padding_side", ("left", "right"), owner="o", optional=True) == (
        "o: padding_side must be one of left, right or omitted, got 'lft'; did you mean 'left'?")
    assert message(check_choice, None, "how", ("mean",), owner="o") == "o: how must be one of mean, got None"


# ---------------------------------------------------------------------------------------- check_str, check_path


def test_check_str():
    assert check_str("text", "column", owner="o") == "text"
    for bad in ("", "   ", 3, None, b"x"):
        assert message(check_str, bad, "split", owner="o") == f"o: split must be a non-empty string, got {bad!r}"
    assert check_str("", "template", owner="o", non_empty=False) == ""
    assert message(check_str, 3, "template", owner="o", non_empty=False) == "o: template must be a string, got 3"
    assert message(check_str, 3, "label_column", owner="dataset 'local'", what="a column name") == (
        "dataset 'local': label_column must be a column name, got 3")
    assert check_str(None, "c", owner="o", optional=True) is None
    assert message(check_str, "", "c", owner="o", optional=True, what="a column name") == (
        "o: c must be a column name or omitted, got ''")


def test_check_path(tmp_path):
    assert check_path("a/b.csv", "path", owner="o") == "a/b.csv"
    out = check_path(tmp_path, "path", owner="o")
    assert type(out) is str and Path(out) == tmp_path
    for bad in ("", 3, None, ["a"]):
        assert message(check_path, bad, "path", owner="dataset 'image-folder'", what="a folder path") == (
            f"dataset 'image-folder': path must be a folder path, got {bad!r}")
    assert message(check_path, 1, "engine", owner="o") == "o: engine must be a path, got 1"
    assert check_path(None, "engine", owner="o", optional=True) is None


def test_family_is_public_and_takes_owner_not_loss():
    for fn in (check_number, check_int, check_bool, check_choice, check_str, check_path):
        assert fn.__name__ in w2s_harness.__all__
        assert getattr(w2s_harness, fn.__name__) is fn
        assert fn.__module__ == "w2s_harness._contracts.validate"
        assert fn.__doc__ and ":raises ConfigError:" in fn.__doc__
        with pytest.raises(TypeError):
            fn(1, "x", loss="l")  # the loss-only keyword is gone


# ------------------------------------------------------------------------------ the built-ins use the family


BUILTIN_CASES = [
    (w2s_harness.create_loss, "kl", {"direction": "foward"},
     "loss 'kl': direction must be one of forward, reverse, got 'foward'; did you mean 'forward'?"),
    (w2s_harness.create_loss, "logconf", {"aux_coef": 1.5}, "loss 'logconf': aux_coef must be a number in [0, 1], got 1.5"),
    (w2s_harness.create_loss, "logconf", {"buffer_size": -1}, "loss 'logconf': buffer_size must be an integer >= 0, got -1"),
    (w2s_harness.create_loss, "window", {"radius": 0.0}, "loss 'window': radius must be a number in (0, 0.5], got 0.0"),
    (w2s_harness.create_loss, "product", {"alpha": True}, "loss 'product': alpha must be a number >= 0, got True"),
    (w2s_harness.create_strategy, "filter", {"keep_frac": 1.5},
     "strategy 'filter': keep_frac must be a number in (0, 1], got 1.5"),
    (w2s_harness.create_strategy, "filter", {"by": "confidenc"},
     "strategy 'filter': by must be one of"),
    (w2s_harness.create_strategy, "ensemble", {"bags": 0}, "strategy 'ensemble': bags must be an integer >= 1, got 0"),
    (w2s_harness.create_strategy, "grid", {"diagonal": "yes"}, "strategy 'grid': diagonal must be true or false, got 'yes'"),
    (w2s_harness.create_strategy, "relabel", {"iterations": -1},
     "strategy 'relabel': iterations must be an integer >= 0, got -1"),
    (w2s_harness.create_dataset, "local", {"path": 3}, "dataset 'local': path must be a file path, got 3"),
    (w2s_harness.create_dataset, "tweets-pairwise", {"pair_seed": -1},
     "dataset 'tweets-pairwise': pair_seed must be an integer >= 0, got -1"),
    (w2s_harness.create_dataset, "sciq", {"max_ctx": 0},
     "dataset 'sciq': max_ctx must be an integer >= 1 or omitted, got 0"),
    (w2s_harness.create_dataset, "sciq", {"mode": "paper"},
     "dataset 'sciq': mode must be one of openai, eleuther, fixed, got 'paper'"),
    (w2s_harness.create_model, "hf:bert-base", {"layers": 0},
     "model 'hf:bert-base': layers must be an integer >= 1 or omitted, got 0"),
    (w2s_harness.create_model, "hf:bert-base", {"dtype": "float8"},
     "model 'hf:bert-base': dtype must be one of float32, bfloat16, float16, got 'float8'; did you mean 'float32'?"),
    (w2s_harness.create_model, "hf:bert-base", {"linear_probe": 1},
     "model 'hf:bert-base': linear_probe must be true or false, got 1"),
    (w2s_harness.create_model, "hf:bert-base", {"lr": 0}, "model 'hf:bert-base': lr must be a number > 0, got 0"),
    (w2s_harness.create_model, "hf:bert-base", {"solver": "adamw", "val_frac": 1.0, "early_stop": "weak_val"},
     "model 'hf:bert-base': val_frac must be a number in (0, 1), got 1.0"),
]


@pytest.mark.parametrize("create,name,params,expected", BUILTIN_CASES,
                         ids=[f"{c[1]}-{next(iter(c[2]))}" for c in BUILTIN_CASES])
def test_builtins_raise_through_the_family(create, name, params, expected):
    text = message(create, name, **params)
    assert re.fullmatch(r"(loss|strategy|dataset|model) '[^']+': \w+ must be .+", text), text
    if expected.endswith("one of"):
        assert text.startswith(expected)
    else:
        assert text == expected


def test_builtin_conversions_keep_types():
    """Validators convert (numpy ints to int, ints to float where the built-in stored floats)."""
    loss = w2s_harness.create_loss("product", alpha=1, beta=2)
    assert loss.params["alpha"] == 1.0 and type(loss.params["alpha"]) is float
    ds = w2s_harness.create_dataset("tweets-pairwise", pair_seed=np.int64(3))
    assert ds.pair_seed == 3 and type(ds.pair_seed) is int
    strat = w2s_harness.create_strategy("filter", keep_frac=1)
    assert strat.keep_frac == 1.0 and type(strat.keep_frac) is float
    assert not math.isnan(strat.keep_frac)
