"""The drawn public API: what plugins may import, what it exports, and the contracts it promises."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import w2s_harness
from w2s_harness import (
    ConfigError,
    PlanBuilder,
    Results,
    StageKind,
    StageRecord,
    hookimpl,
)
from w2s_harness._cli.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def toy_run_args():
    """CLI arguments of a tiny real run (a CSV read by ``local``, GloVe weak and strong: seconds)."""
    from test_pipeline import write_config

    def args(tmp_path):
        cfg = tmp_path / "run.toml"
        if not cfg.exists():
            write_config(tmp_path, loss_block='[[loss]]\nname = "xent"\n', seeds="[0]")
        return ["--config", str(cfg), "--workers", "1"]

    return args
PLUGIN_TREES = [ROOT / "plugins", ROOT / "examples"]


def _imports(path: Path):
    """``(module, names, level)`` of every import statement in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            yield node.module or "", [a.name for a in node.names], node.level, node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, [], 0, node.lineno


def _plugin_files():
    return [p for tree in PLUGIN_TREES for p in tree.rglob("*.py") if "build" not in p.parts]


def test_plugins_and_examples_import_only_public_names():
    public = set(w2s_harness.__all__)
    bad = []
    for path in _plugin_files():
        for module, names, level, line in _imports(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            if level == 0 and module.startswith("w2s_harness"):
                parts = module.split(".")
                if any(p.startswith("_") for p in parts[1:]):
                    bad.append(f"{where}: private module {module}")
                elif module == "w2s_harness":
                    bad += [f"{where}: {n} is not public" for n in names if n not in public]
                elif parts[1] not in ("hookspecs", "kernels", "plugins", "utils"):
                    bad.append(f"{where}: {module} is not a public module")
    assert not bad, "\n".join(bad)


def test_no_plugin_imports_another_plugin_module():
    """A built-in plugin package (datasets, models, losses, strategies) never imports another one: they meet only
    through the registries, as third-party plugins do."""
    bad = []
    for pkg in (ROOT / "plugins" / "builtin").iterdir():
        if not pkg.is_dir() or pkg.name.startswith("_"):
            continue
        for path in pkg.rglob("*.py"):
            for module, _, level, line in _imports(path):
                other = module.startswith("w2s_harness.plugins.") and not module.startswith(
                    f"w2s_harness.plugins.{pkg.name}")
                if other or level > 1:
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {module or '.' * level}")
    assert not bad, "\n".join(bad)


def test_every_public_name_resolves_and_import_is_light():
    for name in w2s_harness.__all__:
        assert getattr(w2s_harness, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        w2s_harness.nope  # noqa: B018
    code = ("import sys, w2s_harness; w2s_harness.PlanBuilder; w2s_harness.Results; w2s_harness.BaseLoss; "
            "w2s_harness.FeatureModel; print(sorted(m for m in ('torch', 'transformers', 'triton') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------------------- the plan builder


class _Cfg:
    """The parts of a RunConfig the builder reads."""

    def __init__(self):
        from w2s_harness import Component

        self.weak, self.strong = Component("w"), Component("s")
        self.losses = [Component("xent"), Component("logconf")]


def _builder():
    return PlanBuilder(_Cfg(), 0, {"dataset": "t"})


def test_stage_names_do_not_depend_on_declaration_order():
    a, b = _builder(), _builder()
    ref_a = a.reference()
    a.train("s", on="train2", labels=ref_a.labels, kind=StageKind.TRAIN_TRANSFER, name="zz long control name")
    a.train("s", on="train2", labels=ref_a.labels, kind=StageKind.TRAIN_TRANSFER, name="transfer[xent]")
    ref_b = b.reference()
    b.train("s", on="train2", labels=ref_b.labels, kind=StageKind.TRAIN_TRANSFER, name="transfer[xent]")
    b.train("s", on="train2", labels=ref_b.labels, kind=StageKind.TRAIN_TRANSFER, name="zz long control name")
    assert {s.id: s.name for s in a.stages.values()} == {s.id: s.name for s in b.stages.values()}
    assert "transfer[xent]" in {s.name for s in a.stages.values()}


def test_builder_helpers_declare_the_reference_protocol():
    b = _builder()
    ref = b.reference()
    rows = b.transfers("naive", ref)
    assert rows == ["naive/xent", "naive/logconf"]
    kinds = sorted(str(s.kind) for s in b.stages.values())
    assert kinds == ["label", "train_ceiling", "train_transfer", "train_transfer", "train_weak"]
    assert [(c.a, c.b) for c in b.comparisons] == [("naive/logconf", "naive/xent")]
    assert all(e.weak_model == "w" and e.strong_model == "s" for e in b.experiments)
    with pytest.raises(ConfigError, match="not a train kind"):
        b.train("s", on="train2", kind=StageKind.LABEL)
    with pytest.raises(ConfigError, match="transfer must be a stage that produces a model"):
        b.experiment("x", strategy="x", loss="xent", weak=ref.weak, ceiling=ref.ceiling, transfer=ref.labels)


def test_loss_in_strategy_options_names_the_option(tmp_path, capsys):
    rc = main(["validate", "--strategy", "bootstrap", "--set", "strategy.inner_loss=xnet", "--seeds", "0"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: strategy.inner_loss: unknown loss 'xnet'. Did you mean: xent?")


class _SeedDependent:
    name = "seed-dependent"

    def plan(self, b):
        ref = b.reference()
        b.transfers("naive", ref, losses=b.config.losses[: 1 + b.seed % 2])


class _SeedPlugin:
    @hookimpl
    def w2s_register_strategies(self, registry):
        registry.add("seed-dependent", _SeedDependent)


def test_every_seed_must_declare_the_same_rows(capsys):
    rc = main(["validate", "--strategy", "seed-dependent", "--seeds", "0,1"], plugins=[_SeedPlugin()])
    err = capsys.readouterr().err
    assert rc == 2 and "declared different rows or comparisons for seed 1 than for seed 0" in err


# ------------------------------------------------------------------ hooks get the documented types


class _Observer:
    def __init__(self):
        self.stages, self.results, self.configured = [], None, []

    @hookimpl
    def w2s_add_options(self, parser):
        parser.add_argument("--obs-tag", default="none")

    @hookimpl
    def w2s_configure(self, config):
        self.configured.append(config.extra["obs_tag"])

    @hookimpl
    def w2s_stage_end(self, stage, result):
        self.stages.append((stage.kind, result))

    @hookimpl
    def w2s_run_end(self, results):
        self.results = results


def test_observer_hooks_receive_typed_records_and_plugin_options_are_recorded(tmp_path, capsys, toy_run_args):
    obs = _Observer()
    assert main(["validate", *toy_run_args(tmp_path), "--obs-tag", "v"], plugins=[obs]) == 0
    assert main(["run", *toy_run_args(tmp_path), "--obs-tag", "r"], plugins=[obs]) == 0
    assert obs.configured == ["v", "r"]  # w2s_configure runs for validate and run alike
    assert obs.stages and all(isinstance(k, StageKind) and isinstance(r, StageRecord) for k, r in obs.stages)
    assert {str(k) for k, _ in obs.stages} >= {"train_weak", "label", "train_ceiling", "train_transfer"}
    assert isinstance(obs.results, Results) and obs.results.status == "complete"
    on_disk = Results.read(tmp_path / "out")
    assert on_disk.config["extra"] == {"obs_tag": "r"}
    assert on_disk.to_dict() == obs.results.to_dict()


def test_a_run_restores_torch_settings(tmp_path, toy_run_args):
    import torch

    before = torch.get_num_threads()
    assert main(["run", *toy_run_args(tmp_path), "--threads", "1" if before > 1 else "2"]) == 0
    assert torch.get_num_threads() == before
    # denormals are flushed during head training and switched back off afterwards
    assert torch.tensor([1e-40], dtype=torch.float32).item() != 0.0


def test_types_a_caller_meets_are_public():
    """What ``run()`` takes and raises and what results hold are importable from ``w2s_harness`` itself."""
    from w2s_harness._execution import interrupts as _interrupts
    from w2s_harness._execution import runner as _runner
    from w2s_harness._results import results as _results

    expected = {"StopFlag": _interrupts.StopFlag, "StopRequested": _interrupts.StopRequested,
                "StagesFailed": _runner.StagesFailed, "Analysis": _results.Analysis,
                "RungResult": _results.RungResult}
    for name, obj in expected.items():
        assert name in w2s_harness.__all__ and getattr(w2s_harness, name) is obj, name
    import inspect

    assert "StopFlag" in str(inspect.signature(w2s_harness.run).parameters["stop"].annotation)


def test_no_public_name_is_an_alias():
    """Every public name is defined under that same name in its module (no ``load_config = resolve`` aliases), and
    the plugin helpers live in ``w2s_harness.utils``, not at the top level."""
    import importlib

    for name, module in w2s_harness._LAZY.items():
        assert name in vars(importlib.import_module(f"w2s_harness.{module}")), f"{name} is not defined in {module}"
    assert not hasattr(w2s_harness, "_ALIASES")
    from w2s_harness import utils

    assert set(utils.__all__) == {"file_sha256", "file_sha256s", "hub_endpoint", "hub_reachable", "user_cache_dir"}
    assert not set(utils.__all__) & set(w2s_harness.__all__)


def test_ref_dict_flattens_every_form_of_a_component_reference():
    """``ref_dict``: what plugin ops store in their specs for a model or loss option given as a name, a table or a
    run's configured component; a table is copied, never shared with the caller."""
    from w2s_harness import Component, ref_dict

    assert ref_dict("xent") == {"name": "xent"}
    table = {"name": "hf:gpt2", "layers": 2}
    copied = ref_dict(table)
    assert copied == table and copied is not table
    assert ref_dict(Component("logconf", {"aux_coef": 0.5})) == {"name": "logconf", "aux_coef": 0.5}
