"""The core's import graph: no import cycles, and the engine fingerprint's modules are the ones the stage ops run.

The graph is read from the syntax trees of ``src/w2s_harness/*.py`` (nothing is imported, so it is fast): module
``a`` imports ``b`` when any ``import`` statement of ``a`` names ``b``, at any depth (an import inside a function
runs when the function does, so it counts), except under ``if TYPE_CHECKING:``: that block never runs (annotations
for type checkers), so it is left out. ``__init__`` stands for the package itself (``from . import __version__``);
the subpackages (``kernels``, ``plugins``) are not core modules.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import w2s_harness
from w2s_harness import _codehash
from w2s_harness._codehash import (
    ENGINE_ROOTS,
    CodeHasher,
    import_closure,
    import_cycles,
    import_graph,
    runtime_imports,
)

CORE = Path(w2s_harness.__file__).parent


def test_the_core_has_no_import_cycle():
    cycles = import_cycles(import_graph(CORE))
    assert not cycles, "import cycles in the core:\n" + "\n".join(" -> ".join(c) for c in cycles)


def write_package(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "w2s_harness"
    pkg.mkdir()
    for name, source in files.items():
        (pkg / f"{name}.py").write_text(textwrap.dedent(source))
    return pkg


def test_every_kind_of_import_counts_except_type_checking_ones(tmp_path):
    pkg = write_package(tmp_path, {
        "__init__": "__version__ = '1'\n",
        "a": """
            from typing import TYPE_CHECKING
            import numpy
            from . import b, __version__
            from .c import thing
            from w2s_harness.d import other
            import w2s_harness.e
            import w2s_harness.kernels.dispatch
            from ..outside import x
            from .kernels import dispatch

            if TYPE_CHECKING:
                from .f import Annotation
            else:
                from .g import Runtime

            def later():
                from . import _h
        """,
        **{n: "" for n in ("b", "c", "d", "e", "f", "g", "_h")},
    })
    assert import_graph(pkg)["a"] == {"__init__", "b", "c", "d", "e", "g", "_h"}


def test_a_cycle_through_a_function_level_import_is_named(tmp_path):
    pkg = write_package(tmp_path, {
        "a": "from .b import f\n",
        "b": "def f():\n    from .c import g\n",
        "c": "def g():\n    from . import a\n",
        "d": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .e import E\n",
        "e": "from .d import D\n",
    })
    assert import_cycles(import_graph(pkg)) == [["a", "b", "c", "a"]]


def test_the_engine_is_the_import_closure_of_the_op_entry_points():
    """Every module a stage op imports (transitively, from ``_ops``) is engine code, computed from the graph."""
    graph = import_graph(CORE)
    engine = set(_codehash.ENGINE_MODULES)
    assert engine == import_closure(graph, ENGINE_ROOTS)
    assert import_closure(graph, ["_ops"]) <= engine
    # what the ops run: the op functions, the stage data model (Subset.indices), the training loop and the probe,
    # the feature cache, the splits, the component contracts, the loss base classes
    assert {"_ops", "_stage", "_training", "_predict", "_probe", "_choice", "_features", "_datasets",
            "_components", "_difficulty", "_loss_base", "_loss_checks", "_torch_settings"} <= engine
    # what decides which stages exist, runs them or reports them: never engine code
    assert not engine & {"_plan", "_identity", "_config", "_cli", "_runner", "_executor", "_ray_executor",
                         "_report", "_plots", "_assemble", "_explain", "_store", "__init__"}


def test_the_harness_classes_components_build_on_are_engine_code():
    """A component's fingerprint leaves out the harness modules it builds on (they are the engine's), so the
    modules of the public base classes and helpers a plugin subclasses or calls in its computation are in it."""
    engine = set(_codehash.ENGINE_MODULES)
    names = ("BaseLoss", "check_loss_inputs", "check_number", "BaseDataset", "TextData", "ChoiceDataset", "StageOp",
             "OpInput", "Subset", "FeatureModel", "FineTuneModel", "zero_linear_head", "OpContext")
    assert {name: w2s_harness._LAZY[name] for name in names if w2s_harness._LAZY[name] not in engine} == {}


@pytest.fixture
def edited(tmp_path, monkeypatch):
    """``edit(module, old, new)``: the engine's view of harness module ``module`` becomes a copy with ``old``
    replaced by ``new`` (:meth:`CodeHasher.module_file` reads the copy, as tests/test_stage_identity.py does for
    the training loop); the installed sources are untouched."""
    copies: dict[str, Path] = {}
    real = CodeHasher.module_file

    def module_file(name):
        return str(copies[name]) if name in copies else real(name)

    monkeypatch.setattr(CodeHasher, "module_file", staticmethod(module_file))

    def edit(module: str, old: str, new: str) -> None:
        name = f"w2s_harness.{module}"
        source = Path(real(name)).read_text()
        assert source.count(old) == 1, old
        copies[name] = tmp_path / f"{module}.py"
        copies[name].write_text(source.replace(old, new))

    return edit


def test_a_planner_edit_leaves_the_engine_fingerprint_and_an_op_edit_changes_it(edited):
    before = CodeHasher().engine()
    edited("_plan", "    return (len(name), name) < (len(other), other)",
           "    return (len(name), name) <= (len(other), other)")  # planning only: which duplicate name wins
    assert CodeHasher().engine() == before
    edited("_identity", '        key = ("loss", ref_key(ref))', '        key = ("a loss", ref_key(ref))')
    assert CodeHasher().engine() == before
    edited("_stage", "permutation(rows)", "permutation(rows[::-1])")  # Subset.indices: ops run it
    after_stage = CodeHasher().engine()
    assert after_stage != before
    edited("_ops", "keep = np.sort(order)", "keep = np.sort(order[::-1])")  # the filter op
    assert CodeHasher().engine() not in (before, after_stage)


def test_a_planner_edit_changes_no_stage_id_and_a_subset_edit_every_one(tmp_path, edited):
    from test_pipeline import write_config

    from w2s_harness import create_plugin_manager, load_config, make_plan

    cfg = load_config(write_config(tmp_path, seeds="[0]"))

    def ids() -> list[str]:
        return [s.id for s in make_plan(cfg, create_plugin_manager()).stages]

    before = ids()
    edited("_plan", "STAGE_FORMAT = 2\n", "STAGE_FORMAT = 2\nPLANNER_ONLY = 1\n")
    assert ids() == before
    edited("_stage", "permutation(rows)", "permutation(rows[::-1])")
    after = ids()
    assert len(after) == len(before) and not set(after) & set(before)


def test_a_module_an_op_starts_to_import_joins_the_engine(edited):
    assert "_report" not in CodeHasher().engine_modules()
    edited("_ops", "def op_filter(ctx: RunContext, stage: Stage, upstream):\n",
           "def op_filter(ctx: RunContext, stage: Stage, upstream):\n    from . import _report  # noqa\n")
    modules = CodeHasher().engine_modules()
    assert {"_report"} <= set(modules) and "_plan" not in modules


def test_runtime_imports_ignore_an_unparsable_source():
    assert runtime_imports(b"def (:", "a", {"a", "b"}) == set()
