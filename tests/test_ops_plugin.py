"""Stage ops as a plugin kind: the ``w2s_register_ops`` hook, ``builder.op``, op identities and execution.

The built-in ops register through the hook (plugin ``builtin:ops``) and declare the same stages as before (their
ids are pinned in ``test_stage_identity.py``). A plugin op here is a real module written to a temporary package
(an op module and a strategy module), so edits are real edits of its source. The example plugin's agreement filter
runs end to end through the CLI at the end.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from test_pipeline import write_config

from w2s_harness import (
    Component,
    ConfigError,
    OpInput,
    PlanBuilder,
    PluginError,
    StageKind,
    StageOp,
    Subset,
    UnknownComponentError,
    create_plugin_manager,
    hookimpl,
    load_config,
    main,
    make_plan,
)
from w2s_harness._engine.ops import OpContext, check_output
from w2s_harness._plan.planner import Stage

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_SRC = REPO / "examples" / "w2s-harness-example-plugin" / "src"

OP_MODULE = '''
"""An outside plugin's op: keep the labelled rows whose row id is divisible by ``every``."""
from w2s_harness import ConfigError, OpInput, StageKind, StageOp, hookimpl


class KeepEvery(StageOp):
    inputs = (OpInput("labels"),)
    kinds = (StageKind.FILTER, StageKind.OP)

    def __init__(self, every: int = 2):
        if not isinstance(every, int) or every < 1:
            raise ConfigError(f"op 'keep-every': every must be a positive integer, got {every!r}")
        self.every = every

    def run(self, ctx, inputs):
        table = inputs["labels"]
        keep = table["indices"] % self.every == 0
        return {"n": int(keep.sum())}, ctx.labels(table["indices"][keep], table["probs"][keep], carry=table)


@hookimpl
def w2s_register_ops(registry):
    registry.add("keep-every", KeepEvery, description="keep rows whose id is divisible by every")
'''

STRATEGY_MODULE = '''
from w2s_harness import hookimpl


class KeepEveryStrategy:
    def __init__(self, every: int = 2):
        self.every = every

    def plan(self, b):
        ref, naive = b.naive_rows()
        kept = b.op("keep-every", inputs=ref.labels, params={"every": self.every}, name="kept")
        b.transfers("keep-every", ref, kept, baseline=naive)


@hookimpl
def w2s_register_strategies(registry):
    registry.add("keep-every", KeepEveryStrategy)
'''


def _site_modules(tmp_path, monkeypatch, name: str, files: dict[str, str]):
    """Write ``files`` ({path under the site: source}) into a fresh site folder on ``sys.path``; a generator for
    a fixture: it yields, then forgets the modules named ``name`` (and below) so the next test imports afresh."""
    site = tmp_path / "site"
    for rel, source in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(source)
    monkeypatch.syspath_prepend(str(site))
    yield
    for mod in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
        del sys.modules[mod]


@pytest.fixture
def outside(tmp_path, monkeypatch):
    """An importable package ``outside_ops_<n>`` with an op module and a strategy module: ``(dir, [modules])``."""
    name = f"outside_ops_{abs(hash(str(tmp_path))) % 10**8}"
    files = {f"{name}/__init__.py": "", f"{name}/ops.py": OP_MODULE, f"{name}/strategy.py": STRATEGY_MODULE}
    for _ in _site_modules(tmp_path, monkeypatch, name, files):
        yield tmp_path / "site" / name, [importlib.import_module(f"{name}.ops"),
                                         importlib.import_module(f"{name}.strategy")]


class _Cfg:
    def __init__(self):
        self.weak, self.strong = Component("w"), Component("s")
        self.losses = [Component("xent")]


def _builder(pm=None) -> PlanBuilder:
    return PlanBuilder(_Cfg(), 0, {"dataset": "t"}, ops=None if pm is None else pm.registry("op"))


# ------------------------------------------------------------------------------------ the hook and the kind


def test_builtin_ops_register_through_the_hook(capsys):
    pm = create_plugin_manager(entry_points=False)
    assert {e.name: e.plugin for e in pm.registry("op")} == {
        **{n: "builtin:ops" for n in ("combine", "filter", "label", "train")},
        # the hf: plugin's elicitation and generative fine-tuning ops
        **{n: "builtin:models" for n in ("generative-train", "icm-labels", "prompt-lm")},
    }
    assert "w2s_register_ops" in {impl.plugin_name and impl.function.__name__
                                  for impl in pm.hook.w2s_register_ops.get_hookimpls()}
    assert main(["list", "ops"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "ops" and "(builtin:ops)" in out and "  filter " in out
    assert main(["plugins"]) == 0
    assert "builtin:ops  w2s-harness" in capsys.readouterr().out


def test_generic_op_declares_the_same_stages_as_the_builder_methods():
    b = _builder()
    weak = b.train("w", on="train1", kind=StageKind.TRAIN_WEAK)
    assert b.op("train", params={"model": "w", "on": "train1"}, kind="train_weak").id == weak.id
    labels = b.label(weak, on="train2")
    assert b.op("label", inputs=[weak], params={"on": Subset("train2")}).id == labels.id
    assert b.op("filter", inputs=[labels], params={"keep_frac": 0.5}).id == b.filter(labels, keep_frac=0.5).id
    assert b.op("combine", inputs={"labels": [labels, labels]}).id == b.combine([labels, labels]).id
    soft = b.train("s", on="train2", labels=labels)
    assert b.op("train", inputs=[labels], params={"model": {"name": "s"}, "on": "train2"}).id == soft.id
    # a built-in stage's identity document has no op code: the built-ins' code is the engine's
    assert set(b.stages[soft.id].identity) == {"op", "spec", "context", "format"}
    assert b.stages[soft.id].inputs == (("labels", 1),)


def test_declaration_errors_name_the_op_and_the_fix():
    b = _builder()
    weak = b.train("w", on="train1")
    labels = b.label(weak, on="train2")
    with pytest.raises(UnknownComponentError, match=r"unknown op 'filtr'\. Did you mean: filter\?"):
        b.op("filtr", inputs=[labels])
    with pytest.raises(ConfigError, match="op 'filter' has no parameter 'keep'"):
        b.op("filter", inputs=[labels], params={"keep": 0.5})
    with pytest.raises(ConfigError, match=r"filter keep_frac must be in \(0, 1\], got 2"):
        b.op("filter", inputs=[labels], params={"keep_frac": 2})
    with pytest.raises(ConfigError, match="input 'labels' needs stages that produce labels; stage 'train:w' "
                                          r"\(train\) produces model"):
        b.op("filter", inputs=[weak], params={"keep_frac": 0.5})
    with pytest.raises(ConfigError, match="input 'trained' takes 1 stage"):
        b.op("label", params={"on": "train2"})
    with pytest.raises(ConfigError, match="op 'combine' has several inputs"):
        b.op("combine", inputs=[labels, labels, labels], params={"how": "accuracy"})
    with pytest.raises(ConfigError, match="op 'filter' has no input 'refs'"):
        b.op("filter", inputs={"refs": labels}, params={"keep_frac": 0.5})
    with pytest.raises(ConfigError, match="op 'label': kind='filter'; use one of label"):
        b.op("label", inputs=[weak], params={"on": "train2"}, kind=StageKind.FILTER)
    with pytest.raises(ConfigError, match="produces no labels"):
        b.train("s", on="train2", labels=weak)


def test_a_factory_must_return_a_stage_op_without_reserved_parameters():
    class NotAnOp:
        def __init__(self, seed: int = 0):
            pass

    class SeedOp(StageOp):
        def __init__(self, seed: int = 0):
            pass

    class Plugin:
        @hookimpl
        def w2s_register_ops(self, registry):
            registry.add("not-an-op", NotAnOp)
            registry.add("seed-op", SeedOp)

    b = _builder(create_plugin_manager([Plugin()], entry_points=False))
    with pytest.raises(PluginError, match="op 'not-an-op' .*returned NotAnOp, not a StageOp"):
        b.op("not-an-op")
    with pytest.raises(PluginError, match="'seed' cannot be a parameter name"):
        b.op("seed-op")
    with pytest.raises(PluginError, match="artifact='probs'"):
        OpInput("x", artifact="probs")


def test_check_output_rejects_malformed_tables():
    stage = Stage("0" * 16, "mine", StageKind.OP, "mine", {}, (), 0)
    op = StageOp()
    good = {"indices": np.arange(3), "probs": np.full((3, 2), 0.5)}
    assert check_output(stage, op, ({}, good))[1] is good
    for bad, match in [((good,), "must return"), (({}, {"probs": good["probs"]}), "no labels table"),
                       (({}, {"indices": np.arange(2), "probs": good["probs"]}), "shapes"),
                       (({}, {"indices": np.zeros(3, int), "probs": good["probs"]}), "twice")]:
        with pytest.raises(PluginError, match=match):
            check_output(stage, op, bad)


def test_op_context_groups_inputs_as_the_op_declares_them():
    stage = Stage("0" * 16, "combine", StageKind.COMBINE, "c", {"how": "mean", "seed": 0, "deps": ["a", "b", "c"]},
                  ("a", "b", "c"), 0, inputs=(("labels", 2), ("scored_by", 1)))
    slots = (OpInput("labels", max=None), OpInput("scored_by", "model", min=0, max=None), OpInput("x", min=0))
    ctx = OpContext(None, stage, [("ra", {"t": "a"}), ("rb", {"t": "b"}), ("rc", {"t": "c"})], slots)
    assert ctx.inputs() == {"labels": [{"t": "a"}, {"t": "b"}], "scored_by": [{"t": "c"}], "x": None}
    assert ctx.records == {"labels": ["ra", "rb"], "scored_by": ["rc"], "x": None}
    assert ctx.params == {"how": "mean"} and ctx.seed == 0
    carried = ctx.labels([1, 2], [[0.5, 0.5]] * 2, carry={"val_indices": np.arange(2), "val_probs": np.ones((2, 2))})
    assert carried["indices"].dtype == np.int64 and carried["probs"].dtype == np.float32 and "val_probs" in carried


def test_op_context_progress_reports_and_is_a_stop_point(tmp_path):
    """``ctx.progress(description, total, unit)`` returns ``advance(n)``: it reports to the run's progress (a
    caller's older two-argument progress too) and raises StopRequested once the run was asked to stop."""
    from w2s_harness import StopRequested
    from w2s_harness._engine.ops import RunContext

    stage = Stage("0" * 16, "search", StageKind.OP, "s", {"seed": 0, "deps": []}, (), 0)
    seen, stop = [], []

    def check_stop():
        if stop:
            raise StopRequested("SIGTERM")

    def three(description, total, unit="rows"):
        seen.append((description, total, unit))
        return lambda n=1: seen.append(n)

    def two(description, total):
        seen.append((description, total))
        return lambda n=1: seen.append(n)

    for progress, first in ((three, ("search", 4, "steps")), (two, ("search", 4)), (None, None)):
        seen.clear()
        stop.clear()
        run = RunContext(pm=None, config=None, output_dir=tmp_path, progress=progress, check_stop=check_stop)
        advance = OpContext(run, stage, []).progress("search", 4, "steps")
        advance(1)
        advance(2)
        assert seen == ([] if first is None else [first, 1, 2])
        stop.append(True)
        with pytest.raises(StopRequested):
            advance(1)


# ----------------------------------------------------------------------------------- a plugin op, end to end


def _plan_ids(cfg, plugins):
    pm = create_plugin_manager(list(plugins))
    return {(s.seed, s.name): s for s in make_plan(cfg, pm).stages}


def test_plugin_op_identity_hashes_its_code_and_parameters(tmp_path, outside):
    pkg, modules = outside
    path = write_config(tmp_path, loss_block='[[loss]]\nname = "xent"\n', seeds="[0]")
    text = path.read_text().replace('name = "naive"', 'name = "keep-every"')
    path.write_text(text)
    before = _plan_ids(load_config(path), modules)
    kept = before[0, "kept"]
    assert (kept.op, kept.kind, kept.spec["every"]) == ("keep-every", StageKind.FILTER, 2)  # default resolved
    assert kept.identity["op_code"] == {f"{pkg.name}.ops": kept.identity["op_code"][f"{pkg.name}.ops"]}
    assert kept.identity["inputs"] == {"labels": 1}
    # editing the op's module reruns its stage and what trains on it; the strategy's module is not hashed
    (pkg / "ops.py").write_text(OP_MODULE.replace("% self.every == 0", "% self.every == 1"))
    (pkg / "strategy.py").write_text(STRATEGY_MODULE + "\n\nUNUSED = 1\n")
    after = _plan_ids(load_config(path), modules)
    changed = {name for (seed, name), st in before.items() if after[seed, name].id != st.id}
    assert changed == {"kept", "keep-every transfer[xent]"}
    # --dry-run names the op's code change in words (the transfer names its upstream stage)
    from w2s_harness._cli.explain import differences

    names = {st.id: name for (_, name), st in after.items()}
    assert differences(kept.identity, after[0, "kept"].identity, names) == [
        f"code of the stage op changed ({pkg.name}.ops)"]
    transfer = before[0, "keep-every transfer[xent]"]
    assert differences(transfer.identity, after[0, "keep-every transfer[xent]"].identity, names) == [
        "upstream stage changed: kept"]


def test_plugin_op_runs_through_the_cli_and_a_rerun_is_cached(tmp_path, outside):
    _, modules = outside
    path = write_config(tmp_path, loss_block='[[loss]]\nname = "xent"\n', seeds="[0]")
    args = ["run", "--config", str(path), "--workers", "1", "--strategy", "keep-every"]
    assert main(args, plugins=modules) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    stages = {s["name"]: s for s in results["stages"]}
    with np.load(tmp_path / "out" / "stages" / stages["kept"]["id"] / "artifact.npz") as npz:
        kept = npz["indices"]
    with np.load(tmp_path / "out" / "stages" / stages["weak labels"]["id"] / "artifact.npz") as npz:
        labelled = npz["indices"]
    assert sorted(kept.tolist()) == sorted(r for r in labelled.tolist() if r % 2 == 0)
    assert stages["keep-every transfer[xent]"]["metrics"]["n_train"] == len(kept)
    assert stages["kept"]["metrics"] == {"n": len(kept)}
    assert main(args, plugins=modules) == 0
    assert json.loads((tmp_path / "out" / "results.json").read_text())["timings"]["stages_computed"] == 0


# ------------------------------------------------------------------------- a plugin op that produces a model
COPY_MODULE = '''
"""An op that produces a model without training: it re-emits the predictions of an upstream model stage."""
from w2s_harness import OpInput, StageKind, StageOp, hookimpl


class CopyModel(StageOp):
    inputs = (OpInput("model", artifact="model"),)
    output = "model"
    kinds = (StageKind.TRAIN_TRANSFER, StageKind.OP)

    def __init__(self, acc_key: str = "test_acc"):
        self.acc_key = acc_key

    def run(self, ctx, inputs):
        table = inputs["model"]
        probs = ctx.take(table, ctx.splits.test)
        acc = float((probs.argmax(axis=1) == ctx.data.labels[ctx.splits.test]).mean())
        return {self.acc_key: acc}, {"indices": table["indices"], "probs": table["probs"]}


class CopyWeak:
    """Report the weak model itself as a transfer: its PGR is 0 by construction."""

    def __init__(self, acc_key: str = "test_acc"):
        self.acc_key = acc_key

    def plan(self, b):
        ref, naive = b.naive_rows()
        copied = b.op("copy-model", inputs=ref.weak, params={"acc_key": self.acc_key}, name="weak copy")
        b.experiment("copy-weak/xent", strategy="copy-weak", loss="xent", weak=ref.weak, ceiling=ref.ceiling,
                     transfer=copied, baseline=naive["xent"])


@hookimpl
def w2s_register_ops(registry):
    registry.add("copy-model", CopyModel)


@hookimpl
def w2s_register_strategies(registry):
    registry.add("copy-weak", CopyWeak)
'''


@pytest.fixture
def copy_plugin(tmp_path, monkeypatch):
    name = f"copy_model_{abs(hash(str(tmp_path))) % 10**8}"
    for _ in _site_modules(tmp_path, monkeypatch, name, {f"{name}.py": COPY_MODULE}):
        yield importlib.import_module(name)


def test_a_plugin_model_op_can_be_a_result_row(tmp_path, copy_plugin):
    """A stage op with ``output = "model"`` stands as an experiment's transfer: the weak model re-emitted as its
    own transfer recovers none of the gap, PGR exactly 0 on every seed, with the weak model's test accuracy."""
    path = write_config(tmp_path, loss_block='[[loss]]\nname = "xent"\n', seeds="[0, 1]")
    args = ["run", "--config", str(path), "--workers", "1", "--strategy", "copy-weak"]
    assert main(args, plugins=[copy_plugin]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    [row] = [e for e in results["experiments"] if e["name"] == "copy-weak/xent"]
    weak = [s["metrics"]["test_acc"] for s in results["stages"] if s["name"] == "weak"]
    copies = [s["metrics"]["test_acc"] for s in results["stages"] if s["name"] == "weak copy"]
    assert sorted(copies) == sorted(weak) and len(copies) == 2
    assert row["pgr"]["per_seed"] == [0.0, 0.0]


def test_a_model_op_without_test_acc_is_a_one_line_error(tmp_path, copy_plugin, capsys):
    path = write_config(tmp_path, loss_block='[[loss]]\nname = "xent"\n', seeds="[0]")
    args = ["run", "--config", str(path), "--workers", "1", "--strategy", "copy-weak",
            "--set", 'strategy.acc_key="accuracy"']
    rc = main(args, plugins=[copy_plugin])
    err = capsys.readouterr().err
    assert rc != 0
    assert "op 'copy-model' (stage 'weak copy') produces a model: its metrics need 'test_acc'" in err


def test_an_experiment_row_needs_a_model_stage():
    b = _builder()
    weak = b.train(Component("w"), on="train1", kind=StageKind.TRAIN_WEAK, name="weak")
    labels = b.label(weak, on="train2", name="weak labels")
    with pytest.raises(ConfigError, match="transfer must be a stage that produces a model"):
        b.experiment("bad", strategy="s", loss="xent", weak=weak, ceiling=weak, transfer=labels)


# -------------------------------------------------------------------------- the example plugin's agreement


def test_example_agreement_keeps_exactly_the_rows_the_two_weak_models_agree_on(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    plugin = importlib.import_module("w2s_example_plugin")
    monkeypatch.delenv("W2S_EXAMPLE_RUN_LOG", raising=False)
    out = tmp_path / "run"
    args = ["run", "--dataset", "example-parity", "--weak", "example-charhash", "--set", "weak.dim=8",
            "--strong", "example-charhash", "--loss", "xent", "--strategy", "example-agreement", "--seeds", "0",
            "--workers", "1", "--device", "cpu", "--output-dir", str(out)]
    assert main(args, plugins=[plugin]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "complete"
    stages = {s["name"]: s for s in results["stages"]}

    def load(name):
        with np.load(out / "stages" / stages[name]["id"] / "artifact.npz") as npz:
            return dict(zip(npz["indices"].tolist(), npz["probs"]))

    weak, partner, agreed = load("weak labels"), load("partner labels"), load("agreement[first]")
    expected = {r for r, p in weak.items() if p.argmax() == partner[r].argmax()}
    assert 0 < len(expected) < len(weak)
    assert set(agreed) == expected
    assert stages["example-agreement transfer[xent]"]["metrics"]["n_train"] == len(expected)


# ------------------------------------------------------------------------------------ the docs' example op


def _docs_agreement_module():
    """The "Writing a stage op" example of docs/plugins/strategies.md, executed as a module."""
    import re
    import types

    text = (REPO / "docs" / "plugins" / "strategies.md").read_text(encoding="utf-8")
    [code] = [m for m in re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL) if "class Agree(StageOp)" in m]
    module = types.ModuleType("w2s_docs_agreement_example")
    module.__file__ = str(REPO / "docs" / "plugins" / "strategies.md")
    sys.modules[module.__name__] = module  # as an installed plugin's module is (its code is fingerprinted)
    exec(compile(code, module.__file__, "exec"), module.__dict__)  # noqa: S102 - the docs' own example
    return module


def test_the_docs_agreement_example_runs_and_keeps_the_agreeing_rows(tmp_path):
    module = _docs_agreement_module()
    path = write_config(tmp_path, loss_block='[[loss]]\nname = "xent"\n', seeds="[0]")
    args = ["run", "--config", str(path), "--workers", "1", "--strategy", "agreement",
            "--set", 'strategy.partner={name = "glove-bow", epochs = 3}']
    assert main(args, plugins=[module]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    stages = {s["name"]: s for s in results["stages"]}

    def load(name):
        with np.load(tmp_path / "out" / "stages" / stages[name]["id"] / "artifact.npz") as npz:
            return dict(zip(npz["indices"].tolist(), npz["probs"]))

    weak, partner, agreed = load("weak labels"), load("partner labels"), load("agreement")
    assert set(agreed) == {r for r, p in weak.items() if p.argmax() == partner[r].argmax()}
    assert stages["agreement"]["op"] == "agree" and stages["agreement"]["kind"] == "filter"
    assert stages["agreement"]["metrics"]["n"] == len(agreed)
