"""Config resolution: defaults < TOML file < shortcut flags < --set; unknown keys; multiple losses."""

from __future__ import annotations

import re

import pytest

from w2s_harness import hookimpl
from w2s_harness._config.config import (
    Component,
    RunConfig,
    RunSection,
    apply_mapping,
    load_config,
    parse_value,
)

DEFAULT_STRONG = "hf:sentence-transformers/all-MiniLM-L6-v2"
from w2s_harness._contracts.errors import ConfigError
from w2s_harness._plugin_system.manager import create_plugin_manager


def write(tmp_path, text: str, name: str = "run.toml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


FILE = """
[dataset]
name = "local"
path = "reviews.csv"
text_columns = ["text"]
n_train = 800

[weak]
name = "weak-from-file"
lr = 0.01

[strategy]
name = "naive"

[[loss]]
name = "xent"

[[loss]]
name = "logconf"
aux_coef = 0.5

[run]
seeds = [5, 6]
output_dir = "runs/from-file"
"""


# -------------------------------------------------------------------------------------------- layers


def test_defaults_layer():
    cfg = load_config()
    assert cfg.dataset == Component("tweets-sentiment")
    assert cfg.weak == Component("glove-bow")
    assert cfg.strong == Component(DEFAULT_STRONG)
    assert [c.name for c in cfg.losses] == ["xent", "logconf"]
    assert cfg.strategy.name == "naive"
    assert cfg.run.seeds == list(range(10)) and cfg.run.device == "auto" and cfg.run.output_dir == "runs/default"
    assert cfg.to_dict() == RunConfig.default().to_dict()


def test_file_layer_overrides_defaults(tmp_path):
    cfg = load_config(write(tmp_path, FILE))
    assert cfg.dataset == Component("local", {"path": "reviews.csv", "text_columns": ["text"], "n_train": 800})
    assert cfg.weak == Component("weak-from-file", {"lr": 0.01})
    assert cfg.strong == Component(DEFAULT_STRONG)  # not in the file: default kept
    assert [c.as_dict() for c in cfg.losses] == [{"name": "xent"}, {"name": "logconf", "aux_coef": 0.5}]
    assert cfg.run.seeds == [5, 6] and cfg.run.output_dir == "runs/from-file"
    assert cfg.run.device == "auto"  # [run] keys not in the file keep their defaults


def test_flags_override_file(tmp_path):
    cfg = load_config(write(tmp_path, FILE), shortcuts={"weak": "weak-from-flag", "dataset": "local", "strategy": None},
                  run={"seeds": RunSection.parse_flag("seeds", "1,2,3"), "output_dir": "runs/flag", "device": "cpu"})
    assert cfg.weak == Component("weak-from-flag")  # a different name: the file's parameters are dropped
    assert cfg.dataset.params["n_train"] == 800  # the same name: the file's parameters are kept
    assert cfg.strategy.name == "naive"  # None means "flag not given"
    assert cfg.run.seeds == [1, 2, 3] and cfg.run.output_dir == "runs/flag" and cfg.run.device == "cpu"


def test_set_overrides_flags_and_file(tmp_path):
    cfg = load_config(write(tmp_path, FILE), run={"seeds": [1, 2]},
                  sets=["run.seeds=[7]", "dataset.n_train=100", "weak.lr=3e-4", "strong.name=hf:other"])
    assert cfg.run.seeds == [7]
    assert cfg.dataset.params["n_train"] == 100 and cfg.dataset.params["path"] == "reviews.csv"
    assert cfg.weak.params == {"lr": 3e-4}
    assert cfg.strong == Component("hf:other")


def test_sets_apply_in_order():
    cfg = load_config(sets=["run.threads=2", "run.threads=4"])
    assert cfg.run.threads == 4


# ---------------------------------------------------------------------------------------- --set values


@pytest.mark.parametrize("text, value", [
    ("3", 3),
    ("-2", -2),
    ("0.5", 0.5),
    ("1e-3", 1e-3),
    ("true", True),
    ("[0, 1, 2]", [0, 1, 2]),
    ('["text", "title"]', ["text", "title"]),
    ('"quoted string"', "quoted string"),
    ("bare-word", "bare-word"),
    ("reviews.csv", "reviews.csv"),
    ("hf:bert-base-uncased", "hf:bert-base-uncased"),
    ("{a = 1}", {"a": 1}),
])
def test_parse_value_as_toml(text, value):
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_set_values_reach_the_config_typed():
    cfg = load_config(sets=["dataset.n_train=64", "dataset.frac=0.25", "dataset.text_columns=[\"q\", \"a\"]",
                        "dataset.template=\"{q} {a}\"", "dataset.path=data/x.csv", "run.device=cuda:1"])
    assert cfg.dataset.params == {"n_train": 64, "frac": 0.25, "text_columns": ["q", "a"],
                                  "template": "{q} {a}", "path": "data/x.csv"}
    assert cfg.run.device == "cuda:1"


def test_set_name_replaces_component_name():
    cfg = load_config(sets=["dataset.name=local", "dataset.path=a.csv"])
    assert cfg.dataset == Component("local", {"path": "a.csv"})


@pytest.mark.parametrize("bad", ["run.seeds", "seeds=1", "=3"])
def test_set_syntax_errors(bad):
    with pytest.raises(ConfigError, match=r"--set expects section\.key=value \(e\.g\. loss\.aux_coef=0\.3\), got"):
        load_config(sets=[bad])


# ------------------------------------------------------------------------------------ unknown keys


def test_unknown_section_in_file_names_it_and_valid_ones(tmp_path):
    path = write(tmp_path, '[datset]\nname = "local"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (f"unknown section [datset] in {path}. Did you mean: dataset? "
                               f"Valid sections: dataset, weak, strong, loss, strategy, run")


def test_unknown_run_key_in_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "[run]\nseed = [1]\n"))
    msg = str(info.value)
    assert msg.startswith("unknown key run.seed. Did you mean: seeds? Valid keys: seeds, device, ")
    assert "output_dir" in msg


def test_unknown_section_and_key_in_set():
    with pytest.raises(ConfigError, match=r"^--set modle\.x: unknown section 'modle'\."):
        load_config(sets=["modle.x=1"])
    with pytest.raises(ConfigError, match=r"^unknown key run\.outdir\. Did you mean: output_dir\? Valid keys: "):
        load_config(sets=["run.outdir=x"])


def test_component_section_needs_a_name(tmp_path):
    with pytest.raises(ConfigError, match=r"\[weak\] needs a 'name'"):
        load_config(write(tmp_path, "[weak]\nlr = 0.1\n"))
    with pytest.raises(ConfigError, match=r"\[run\] in .* must be a table"):
        load_config(write(tmp_path, "run = 3\n", "r2.toml"))


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist; pass an existing TOML file to --config"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(write(tmp_path, "[dataset\nname=1"))


@pytest.mark.parametrize("assignment, fragment", [
    ("run.seeds=3", "run.seeds must be a non-empty list of integers, got 3"),
    ("run.seeds=[]", "run.seeds must be a non-empty list of integers"),
    ("run.seeds=[1, 1]", "run.seeds has duplicates"),
    ("run.seeds=[1, true]", "run.seeds must be a non-empty list of integers"),
    ("run.device=3", "run.device must be auto, cpu, cuda or cuda:N, got 3"),
    ("run.device=tpu", "run.device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ("run.dtype=bfloat16", "unknown key run.dtype"),
    ("run.threads=two", "run.threads must be an integer >= 0 (0 = torch's default), got 'two'"),
    ("run.output_dir=[1]", "run.output_dir must be a string"),
])
def test_run_section_values_are_type_checked(assignment, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_config(sets=[assignment])


def test_seeds_flag_must_be_integers():
    with pytest.raises(ConfigError, match="--seeds expects integers separated by commas, got '0,x'"):
        RunSection.parse_flag("seeds", "0,x")


# ---------------------------------------------------------------------------------- multiple losses


class Plain:
    def __init__(self, temperature: float = 1.0):
        self.temperature = temperature


class WithAux:
    def __init__(self, aux_coef: float = 0.5, warmup_frac: float = 0.2):
        self.aux_coef = aux_coef


class LossPlugin:
    @hookimpl
    def w2s_register_losses(self, registry):
        registry.add("t-plain", Plain)
        registry.add("t-aux", WithAux)
        registry.add("t-aux2", WithAux)


@pytest.fixture(scope="module")
def accepts():
    reg = create_plugin_manager(plugins=[LossPlugin()], entry_points=False).registry("loss")

    def accepts(name, key):
        params = reg.resolve(name)[0].parameters()
        return params is None or key in params

    return accepts


def test_loss_flag_with_several_names():
    cfg = load_config(shortcuts={"loss": "t-plain, t-aux ,"})
    assert cfg.losses == [Component("t-plain"), Component("t-aux")]


def test_loss_tables_in_file(tmp_path):
    cfg = load_config(write(tmp_path, '[[loss]]\nname = "t-plain"\n[[loss]]\nname = "t-aux"\naux_coef = 0.7\n'))
    assert [c.as_dict() for c in cfg.losses] == [{"name": "t-plain"}, {"name": "t-aux", "aux_coef": 0.7}]
    # a single [loss] table and a bare list of names work too
    assert load_config(write(tmp_path, '[loss]\nname = "t-aux"\n', "b.toml")).losses == [Component("t-aux")]
    assert load_config(write(tmp_path, 'loss = ["t-aux", "t-plain"]\n', "c.toml")).losses == [
        Component("t-aux"), Component("t-plain")]


def test_loss_flag_keeps_parameters_from_file(tmp_path):
    path = write(tmp_path, '[[loss]]\nname = "t-aux"\naux_coef = 0.7\n')
    cfg = load_config(path, shortcuts={"loss": "t-plain,t-aux"})
    assert [c.as_dict() for c in cfg.losses] == [{"name": "t-plain"}, {"name": "t-aux", "aux_coef": 0.7}]


def test_set_loss_param_goes_to_losses_accepting_it(accepts):
    cfg = load_config(shortcuts={"loss": "t-plain,t-aux,t-aux2"}, sets=["loss.aux_coef=0.3"], accepts=accepts)
    assert [c.as_dict() for c in cfg.losses] == [
        {"name": "t-plain"}, {"name": "t-aux", "aux_coef": 0.3}, {"name": "t-aux2", "aux_coef": 0.3}]


def test_set_loss_param_no_loss_accepts_is_an_error(accepts):
    with pytest.raises(ConfigError, match=r"--set loss\.aux_coef: none of the losses \(t-plain, t-aux\) has "
                                          r"a parameter 'aux_coef'"):
        load_config(shortcuts={"loss": "t-plain,t-aux"}, sets=["loss.aux_coef=0.3", "loss.temperature=2"],
                accepts=lambda name, key: False)


def test_set_on_a_single_loss_is_checked_later_against_the_component(accepts):
    cfg = load_config(shortcuts={"loss": "t-plain"}, sets=["loss.aux_coef=0.3"], accepts=accepts)
    assert cfg.losses == [Component("t-plain", {"aux_coef": 0.3})]
    reg = create_plugin_manager(plugins=[LossPlugin()], entry_points=False).registry("loss")
    with pytest.raises(ConfigError, match=r"loss 't-plain' has no parameter 'aux_coef'\. .*"
                                          r"Valid parameters: temperature"):
        reg.check_params("t-plain", cfg.losses[0].params)


def test_resolved_config_round_trips_through_to_dict(tmp_path):
    cfg = load_config(write(tmp_path, FILE), sets=["loss.aux_coef=0.3"], accepts=lambda n, k: n == "logconf")
    d = cfg.to_dict()
    assert d["loss"] == [{"name": "xent"}, {"name": "logconf", "aux_coef": 0.3}]
    # the resolved config (as stored in results.json) is itself a valid config mapping
    assert apply_mapping(RunConfig.default(), d, "results.json").to_dict() == d
