"""Stage graphs of the built-in strategies: which stage consumes which labels, stage counts, dedupe.

These build plans only (no data, no training): a :class:`PlanBuilder` per seed, or ``runner.make_plan`` with a
toy dataset/model plugin. End-to-end runs are in ``test_strategies_e2e.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from w2s_harness._config.config import Component, RunConfig, load_config
from w2s_harness._contracts.components import Splits, TextData

DEFAULT_STRONG = "hf:sentence-transformers/all-MiniLM-L6-v2"
from w2s_harness._contracts.errors import ConfigError, W2SError
from w2s_harness._data.datasets import BaseDataset, fingerprint_examples
from w2s_harness._plan.planner import PlanBuilder, Subset, make_plan
from w2s_harness._plugin_system.manager import create_plugin_manager
from w2s_harness.hookspecs import hookimpl

WEAK, MID1, MID2, STRONG = "toy-weak", {"name": "toy-strong", "layers": 1}, {"name": "toy-strong", "layers": 2}, "toy-strong"
LADDER = [WEAK, MID1, MID2, STRONG]


# ----------------------------------------------------------------------------------------------- helpers


class ToyDataset(BaseDataset):
    name = "toy"

    def _load(self):
        texts = [f"text {i}" for i in range(60)]
        labels = np.arange(60) % 2
        return TextData(texts, labels, ["a", "b"], fingerprint_examples(texts, labels, ["a", "b"]))


class ToyModel:
    """A fine-tune model that is only planned with (its identity feeds stage ids); nothing here trains it."""

    def __init__(self, layers: int | None = None):
        self.layers = layers

    def identity(self):
        return {"layers": self.layers}

    def classifier(self, n_classes, device):
        raise AssertionError("strategy tests build plans only")


class ToyPlugin:
    @hookimpl
    def w2s_register_datasets(self, registry):
        registry.add("toy", ToyDataset)

    @hookimpl
    def w2s_register_models(self, registry):
        registry.add("toy-weak", ToyModel)
        registry.add("toy-strong", ToyModel)


@pytest.fixture(scope="module")
def pm():
    return create_plugin_manager([ToyPlugin()], entry_points=False)


def config(strategy="naive", losses=("xent", "logconf"), weak=WEAK, strong=STRONG, seeds=(0,)) -> RunConfig:
    c = RunConfig(Component("toy"), Component.from_dict("weak", weak), Component.from_dict("strong", strong),
                  [Component(n) for n in losses], Component(strategy))
    c.run.seeds = list(seeds)
    return c


def build(pm, strategy, params=None, **kw) -> PlanBuilder:
    cfg = config(strategy, **kw)
    b = PlanBuilder(cfg, 0, {"dataset": "toy"}, check_loss=lambda name, params: pm.create("loss", name, **params))
    pm.create("strategy", strategy, **(params or {})).plan(b)
    return b


def exp(b, name):
    (e,) = [e for e in b.experiments if e.name == name]
    return e


def deps(b, ref):
    """The stages a stage (a StageRef or Stage) consumes."""
    return [b.stages[d] for d in b.stages[ref.id].deps]


def spec_on(stage) -> Subset:
    return Subset(**stage.spec["on"])


SPLITS = Splits(train1=np.arange(0, 100), train2=np.arange(100, 200), test=np.arange(200, 250))


def rows(stage) -> set:
    return set(spec_on(stage).indices(SPLITS).tolist())


def label_leaks(b) -> list[str]:
    """Label stages that predict rows their own model trained on (in-sample labels)."""
    out = []
    for st in b.stages.values():
        if st.op == "label":
            (producer,) = [b.stages[d] for d in st.deps]
            if rows(st) & rows(producer):
                out.append(st.name)
    return out


def train_label_sources(b, ref) -> list:
    """Label stages consumed by train stage ``ref``."""
    return [d for d in deps(b, ref) if d.op == "label"]


# ------------------------------------------------------------------------------------------------ naive


def test_naive_graph(pm):
    b = build(pm, "naive")
    assert len(b.stages) == 5  # weak, weak labels, ceiling, 2 transfers
    assert [e.name for e in b.experiments] == ["naive/xent", "naive/logconf"]
    e = exp(b, "naive/xent")
    (lab,) = deps(b, e.transfer)
    assert lab.op == "label" and lab.spec["on"]["split"] == "train2" and lab.deps == (e.weak.id,)
    assert b.stages[e.weak.id].spec["on"]["split"] == "train1"
    assert b.stages[e.ceiling.id].spec["labels"] == "gt" and b.stages[e.ceiling.id].spec["on"]["split"] == "train2"
    assert [(c.a, c.b) for c in b.comparisons] == [("naive/logconf", "naive/xent")]


# ---------------------------------------------------------------------------------------------- bootstrap


def test_bootstrap_crossfit_graph(pm):
    b = build(pm, "bootstrap", {"rungs": LADDER, "folds": 5})
    # 3 reference stages; 2 inner rungs x (rung model + 5 fold models + 5 fold labels); 2 final rungs;
    # 2 direct; flat: 2 inner strong rungs (the first one's rung model *is* direct/xent) + 2 final
    assert len(b.stages) == 3 + 2 * 11 + 2 + 2 + (10 + 11) + 2
    assert [e.name for e in b.experiments] == ["bootstrap/xent", "direct/xent", "flat/xent",
                                               "bootstrap/logconf", "direct/logconf", "flat/logconf"]
    lad, direct, naive = exp(b, "bootstrap/logconf"), exp(b, "direct/logconf"), build(pm, "naive")
    # rungs: weak first, then each trained rung; transfer = the last rung; same weak and ceiling as naive
    assert [name for name, _ in lad.rungs] == ["toy-weak", "toy-strong@L1", "toy-strong@L2", "toy-strong"]
    assert lad.rungs[0][1] == lad.weak and lad.rungs[-1][1] == lad.transfer
    n_exp = exp(naive, "naive/logconf")
    assert (lad.weak.id, lad.ceiling.id) == (n_exp.weak.id, n_exp.ceiling.id)
    assert direct.transfer.id == n_exp.transfer.id  # direct == naive, computed once
    assert set(naive.stages) <= set(b.stages)
    # rung 1 (L1) is trained on the weak labels of all of train2; its fold models on fold complements
    r1 = lad.rungs[1][1]
    (weak_lab,) = train_label_sources(b, r1)
    assert weak_lab.deps == (lad.weak.id,) and spec_on(weak_lab) == Subset("train2")
    # rung 2 (L2) and the final rung consume K=5 fold labels, each from a model that never saw that fold
    for rung in (lad.rungs[2][1], lad.rungs[3][1]):
        sources = train_label_sources(b, rung)
        assert sorted(spec_on(s).part for s in sources) == list(range(5))
        for s in sources:
            (producer,) = [b.stages[d] for d in s.deps]
            assert spec_on(producer) == Subset("train2", spec_on(s).part, 5, complement=True)
    # the fold models of L1 consume the weak labels; those of L2 consume L1's fold labels
    l2_sources = train_label_sources(b, lad.rungs[2][1])
    l1_fold = b.stages[l2_sources[0].deps[0]]
    assert l1_fold.spec["model"] == MID1 and [d.name for d in deps(b, l1_fold)] == ["weak labels"]
    # final rung: the row's loss; inner rungs: xent
    assert b.stages[lad.transfer.id].spec["loss"] == {"name": "logconf"}
    assert b.stages[r1.id].spec["loss"] == {"name": "xent"}
    assert label_leaks(b) == []  # crossfit: every label is out-of-sample
    # flat: weak rung, then the strong model on every rung
    flat = exp(b, "flat/logconf")
    assert [name for name, _ in flat.rungs] == ["toy-weak"] + ["toy-strong"] * 3
    assert flat.rungs[1][1].id == exp(b, "direct/xent").transfer.id
    assert all(b.stages[ref.id].spec["model"] == {"name": "toy-strong"} for _, ref in flat.rungs[1:])
    assert (flat.weak.id, flat.ceiling.id) == (lad.weak.id, lad.ceiling.id)
    pairs = {(c.a, c.b) for c in b.comparisons}
    for tag in ("xent", "logconf"):
        assert {(f"bootstrap/{tag}", f"direct/{tag}"), (f"flat/{tag}", f"direct/{tag}"),
                (f"bootstrap/{tag}", f"flat/{tag}")} <= pairs
    assert ("direct/logconf", "direct/xent") in pairs
    assert lad.baseline == "direct/logconf" and flat.baseline == "direct/logconf"


def test_bootstrap_same_graph_is_in_sample(pm):
    b = build(pm, "bootstrap", {"rungs": LADDER, "scheme": "same"})
    assert len(b.stages) == 3 + 2 * 2 + 2 + 2 + (1 + 2) + 2
    lad = exp(b, "bootstrap/xent")
    for prev, cur in zip(lad.rungs[1:], lad.rungs[2:]):
        (src,) = train_label_sources(b, cur[1])
        assert src.deps == (prev[1].id,) and spec_on(src) == Subset("train2")  # in-sample relabelling
    assert len(label_leaks(b)) == 4  # ladder L1, L2 and flat's two inner strong rungs label their own rows


def test_bootstrap_slices_graph(pm):
    b = build(pm, "bootstrap", {"rungs": LADDER, "scheme": "slices"}, losses=("xent",))
    lad = exp(b, "bootstrap/xent")
    for i, (_, ref) in enumerate(lad.rungs[1:]):
        assert spec_on(b.stages[ref.id]) == Subset("train2", i, 3)  # rung i+1 on slice i of 3
        (src,) = train_label_sources(b, ref)
        assert spec_on(src) == Subset("train2", i, 3)
    assert label_leaks(b) == []
    # weak labels of all of train2 (direct) + of slice 0 (ladder, flat); direct; ladder 2x(train+label)+final;
    # flat 2x(train+label)+final
    assert len(b.stages) == 3 + 1 + 1 + 5 + 5


@pytest.mark.parametrize("scheme", ["crossfit", "same", "slices"])
def test_bootstrap_two_rungs_equals_naive(pm, scheme):
    naive = build(pm, "naive")
    b = build(pm, "bootstrap", {"rungs": [WEAK, STRONG], "scheme": scheme})
    assert set(b.stages) == set(naive.stages)
    assert [e.name for e in b.experiments] == ["bootstrap/xent", "direct/xent", "bootstrap/logconf", "direct/logconf"]
    for tag in ("xent", "logconf"):
        lad, ref = exp(b, f"bootstrap/{tag}"), exp(naive, f"naive/{tag}")
        assert (lad.weak.id, lad.ceiling.id, lad.transfer.id) == (ref.weak.id, ref.ceiling.id, ref.transfer.id)
    assert {s.name for s in b.stages.values()} == {s.name for s in naive.stages.values()}


def test_bootstrap_default_rungs():
    from w2s_harness.plugins.strategies import Bootstrap

    cfg = RunConfig.default()
    b = PlanBuilder(cfg, 0, {})
    Bootstrap().plan(b)
    lad = exp(b, "bootstrap/logconf")
    assert [n for n, _ in lad.rungs] == ["glove-bow", f"{DEFAULT_STRONG}@L1", f"{DEFAULT_STRONG}@L3", DEFAULT_STRONG]
    assert b.stages[lad.rungs[1][1].id].spec["model"] == {"name": DEFAULT_STRONG, "layers": 1}
    # the last rung is the run's strong model itself, so direct/ceiling stages are shared with naive
    naive = PlanBuilder(cfg, 0, {})
    from w2s_harness.plugins.strategies import Naive

    Naive().plan(naive)
    assert exp(b, "direct/xent").transfer == exp(naive, "naive/xent").transfer
    assert lad.ceiling == exp(naive, "naive/xent").ceiling
    # another strong model: [weak, strong]
    cfg.strong = Component("hf:some/other")
    b2 = PlanBuilder(cfg, 0, {})
    Bootstrap().plan(b2)
    assert len(exp(b2, "bootstrap/xent").rungs) == 2


def test_bootstrap_rung_options(pm):
    b = build(pm, "bootstrap", {"rungs": ["weak", MID1, MID2, "strong"], "rung_losses": ["xent", {"name": "kl"}],
                                "controls": False}, losses=("logconf",))
    assert [e.name for e in b.experiments] == ["bootstrap/logconf"] and not b.comparisons
    lad = exp(b, "bootstrap/logconf")
    assert [b.stages[r.id].spec["loss"]["name"] for _, r in lad.rungs[1:]] == ["xent", "kl", "logconf"]
    with pytest.raises(ConfigError, match="rung_losses"):
        pm.create("strategy", "bootstrap", rungs=LADDER, rung_losses=["xent"])
    with pytest.raises(ConfigError, match="scheme"):
        pm.create("strategy", "bootstrap", scheme="bogus")
    with pytest.raises(ConfigError, match="rungs"):
        pm.create("strategy", "bootstrap", rungs=["toy-weak"])
    with pytest.raises(ConfigError, match="folds"):
        pm.create("strategy", "bootstrap", folds=1)
    with pytest.raises(ConfigError, match="no parameter"):
        pm.create("strategy", "bootstrap", rung=LADDER)


@pytest.mark.parametrize("params, match", [
    ({"inner_loss": "xnet"}, "Did you mean: xent"),  # unknown inner loss
    ({"rung_losses": ["xent", {"name": "logconf", "aux_coef": 2.0}]}, "aux_coef"),  # bad value
    ({"inner_loss": {"name": "kl", "direction": "sideways"}}, "direction"),
])
def test_plan_checks_every_stage_loss_before_anything_runs(pm, params, match):
    cfg = config("bootstrap", losses=("logconf",))
    cfg.strategy.params = {"rungs": ["weak", MID1, MID2, "strong"], **params}
    with pytest.raises(W2SError, match=match):  # ConfigError, or UnknownComponentError for a typo
        make_plan(cfg, pm)


# --------------------------------------------------------------------------------------------- confidence


def test_confidence_graph(pm):
    b = build(pm, "confidence", {"aux_coef": 0.3, "warmup": "openai", "buffer_size": 64})
    assert len(b.stages) == 5
    assert [e.name for e in b.experiments] == ["naive/xent", "confidence/logconf(aux_coef=0.3,buffer_size=64,warmup=openai)"]
    conf = b.experiments[1]
    assert b.stages[conf.transfer.id].spec["loss"] == {"name": "logconf", "aux_coef": 0.3, "warmup": "openai",
                                                        "buffer_size": 64}
    assert deps(b, conf.transfer)[0].name == "weak labels"
    assert exp(b, "naive/xent").transfer == exp(build(pm, "naive"), "naive/xent").transfer
    assert [(c.a, c.b) for c in b.comparisons] == [(conf.name, "naive/xent")]
    # unset options keep a configured logconf's parameters; no baseline row on request
    cfg = config("confidence")
    cfg.losses = [Component("logconf", {"aux_coef": 0.2, "warmup_frac": 0.3})]
    b2 = PlanBuilder(cfg, 0, {})
    pm.create("strategy", "confidence", aux_coef=0.4, baseline="").plan(b2)
    (only,) = b2.experiments
    assert b2.stages[only.transfer.id].spec["loss"] == {"name": "logconf", "aux_coef": 0.4, "warmup_frac": 0.3}
    with pytest.raises(ConfigError, match="warmup"):
        build(pm, "confidence", {"warmup": "bogus"})


# ----------------------------------------------------------------------------------------------- ensemble


def test_ensemble_graph(pm):
    b = build(pm, "ensemble", {"members": ["weak", MID1], "bags": 2})
    # naive (5) + 4 supervisors x (train + label) + combine + 2 transfers
    assert len(b.stages) == 5 + 8 + 1 + 2
    e = exp(b, "ensemble/xent")
    (comb,) = deps(b, e.transfer)
    assert comb.op == "combine" and comb.spec["how"] == "mean" and len(comb.deps) == 4
    sups = [b.stages[b.stages[d].deps[0]] for d in comb.deps]
    assert [s.spec["model"] for s in sups] == [{"name": WEAK}] * 2 + [MID1] * 2
    assert [spec_on(s) for s in sups[:2]] == [Subset("train1", j, 2, complement=True) for j in range(2)]
    assert all(spec_on(b.stages[d]) == Subset("train2") for d in comb.deps)
    assert e.weak == exp(b, "naive/xent").weak and e.baseline == "naive/xent"
    assert ("ensemble/logconf", "naive/logconf") in {(c.a, c.b) for c in b.comparisons}
    a = build(pm, "ensemble", {"bags": 3, "how": "accuracy"}, losses=("xent",))
    (comb,) = deps(a, exp(a, "ensemble/xent").transfer)
    labels, scorers = comb.deps[:3], [a.stages[d] for d in comb.deps[3:]]
    assert [a.stages[a.stages[d].deps[0]] for d in labels] == scorers  # each label scored by its own bag
    assert [Subset(**h) for h in comb.spec["holdout"]] == [Subset("train1", j, 3) for j in range(3)]
    assert [spec_on(s) for s in scorers] == [Subset("train1", j, 3, complement=True) for j in range(3)]
    with pytest.raises(ConfigError, match="bags >= 2"):
        pm.create("strategy", "ensemble", members=["weak", "strong"], bags=1, how="accuracy")
    w = build(pm, "ensemble", {"bags": 3, "how": "weighted", "weights": [1, 2, 3]}, losses=("xent",))
    (comb,) = deps(w, exp(w, "ensemble/xent").transfer)
    assert comb.spec == {**comb.spec, "how": "weighted", "weights": [1, 2, 3]}
    with pytest.raises(ConfigError, match="weights"):
        pm.create("strategy", "ensemble", how="weighted")
    with pytest.raises(ConfigError, match=">= 2 supervisors"):
        pm.create("strategy", "ensemble", bags=1)


# ------------------------------------------------------------------------------------------------- filter


def test_filter_confidence_graph(pm):
    b = build(pm, "filter", {"keep_frac": 0.3})
    assert len(b.stages) == 5 + 1 + 2
    e = exp(b, "filter/xent")
    (flt,) = deps(b, e.transfer)
    assert flt.op == "filter" and flt.spec["by"] == "confidence" and flt.spec["keep_frac"] == 0.3
    assert [d.name for d in deps(b, flt)] == ["weak labels"]
    assert e.baseline == "naive/xent"


@pytest.mark.parametrize("reference,extra", [("transfer", 1), ("train1", 2)])
def test_filter_learnability_graph(pm, reference, extra):
    b = build(pm, "filter", {"by": "learnability", "reference": reference})
    # naive + reference model (transfer: the naive xent transfer itself) + its labels + filter + 2 transfers
    assert len(b.stages) == 5 + extra + 1 + 2
    (flt,) = deps(b, exp(b, "filter/xent").transfer)
    weak_lab, ref_lab = [b.stages[d] for d in flt.deps]
    assert weak_lab.name == "weak labels" and spec_on(ref_lab) == Subset("train2")
    ref_model = b.stages[ref_lab.deps[0]]
    assert ref_model.spec["model"] == {"name": STRONG}
    if reference == "transfer":
        assert ref_model.id == exp(b, "naive/xent").transfer.id
    else:
        assert spec_on(ref_model) == Subset("train1") and ref_model.spec["labels"] == "gt"
    with pytest.raises(ConfigError, match="keep_frac"):
        pm.create("strategy", "filter", keep_frac=0)


# ------------------------------------------------------------------------------------------------ relabel


def test_relabel_graph(pm):
    b = build(pm, "relabel", {"iterations": 2})
    # naive (5) + per loss: label of the transfer + round 1 + its label + round 2
    assert len(b.stages) == 5 + 2 * 4
    e, n = exp(b, "relabel/logconf"), exp(b, "naive/logconf")
    assert [name for name, _ in e.rungs] == ["toy-weak", "toy-strong", "toy-strong r1", "toy-strong r2"]
    assert e.rungs[1][1] == n.transfer and e.transfer == e.rungs[-1][1]
    for prev, cur in zip(e.rungs[1:], e.rungs[2:]):
        (src,) = train_label_sources(b, cur[1])
        assert src.deps == (prev[1].id,) and spec_on(src) == Subset("train2")
        assert b.stages[cur[1].id].spec["loss"] == {"name": "logconf"}
    assert ("relabel/logconf", "naive/logconf") in {(c.a, c.b) for c in b.comparisons}
    cf = build(pm, "relabel", {"iterations": 1, "scheme": "crossfit", "folds": 3}, losses=("xent",))
    assert len(cf.stages) == 4 + 3 * 2 + 1 and label_leaks(cf) == []
    assert len(build(pm, "relabel", {"iterations": 0}).stages) == 5


# ------------------------------------------------------------------------------------------ through the runner


@pytest.mark.parametrize("strategy", ["naive", "confidence", "bootstrap", "ensemble", "filter", "relabel"])
def test_make_plan_dedupes_across_seeds(pm, strategy):
    cfg = load_config(shortcuts={"strategy": strategy, "dataset": "toy", "weak": WEAK, "strong": STRONG,
                             "loss": "xent"}, run={"seeds": [0, 1]},
                  sets=['strategy.rungs=["toy-weak", {name = "toy-strong", layers = 1}, "toy-strong"]']
                  if strategy == "bootstrap" else [])
    plan = make_plan(cfg, pm)
    one = build(pm, strategy, ({"rungs": [WEAK, MID1, STRONG]} if strategy == "bootstrap" else None), losses=("xent",))
    assert len(plan.stages) == 2 * len(one.stages)
    assert {s.seed for s in plan.stages} == {0, 1}
    ids = [s.id for s in plan.stages]
    assert len(ids) == len(set(ids))
    pos = {sid: i for i, sid in enumerate(ids)}
    assert all(pos[d] < pos[s.id] for s in plan.stages for d in s.deps)  # dependency order
    assert [e.name for e in plan.experiments[0]] == [e.name for e in one.experiments]



class VersionedWeak(ToyModel):
    """A weak model whose identity (think: checkpoint hash, code defaults) can change under the same config."""

    version = "v1"

    def identity(self):
        return {"weights": self.version}


class VersionedPlugin:
    @hookimpl
    def w2s_register_datasets(self, registry):
        registry.add("toy", ToyDataset)

    @hookimpl
    def w2s_register_models(self, registry):
        registry.add("toy-weak", VersionedWeak)
        registry.add("toy-strong", ToyModel)


def test_model_identity_is_part_of_every_downstream_stage_id(monkeypatch):
    """Changing a model's resolved identity invalidates its stages and everything downstream although the
    config is unchanged; stages that do not depend on it keep their ids (cache hits)."""
    pm = create_plugin_manager([VersionedPlugin()], entry_points=False)
    cfg = config("naive", losses=("xent",))
    before = {s.name: s.id for s in make_plan(cfg, pm).stages}
    monkeypatch.setattr(VersionedWeak, "version", "v2")
    after = {s.name: s.id for s in make_plan(cfg, pm).stages}
    assert set(before) == set(after) == {"weak", "weak labels", "ceiling", "transfer[xent]"}
    assert {n for n in before if before[n] != after[n]} == {"weak", "weak labels", "transfer[xent]"}


def test_builtin_strategies_declare_builtin_ops_only_and_every_label_input_produces_labels(pm):
    """Each built-in strategy's stages are of the four built-in ops, with the input layout the op declares."""
    for strategy in ("naive", "bootstrap", "ensemble", "filter", "relabel", "confidence"):
        b = build(pm, strategy)
        for st in b.stages.values():
            assert st.op in ("train", "label", "combine", "filter"), (strategy, st.name)
            assert sum(n for _, n in st.inputs) == len(st.deps), (strategy, st.name)
            if st.op == "train" and st.spec["labels"] == "soft":
                assert all(b.stages[d].op in ("label", "combine", "filter") for d in st.deps)
