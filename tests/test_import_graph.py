"""The core's import graph: no import cycles, and the engine fingerprint's modules are the ones the stage ops run.

The graph is read from the syntax trees of ``src/w2s_harness/**/*.py`` (nothing is imported, so it is fast): module
``a`` imports ``b`` when any ``import`` statement of ``a`` names ``b``, at any depth (an import inside a function
runs when the function does, so it counts), except under ``if TYPE_CHECKING:``: that block never runs (annotations
for type checkers), so it is left out. Modules are named relative to the package (``_engine.ops``; ``_engine`` for
a subpackage's ``__init__``, ``__init__`` for the package itself); ``kernels`` and ``plugins`` are not core modules.

The core is layered by concern subpackages; the layers below are the architecture's, and the tests hold the code
to them: no module cycle, no subpackage cycle, no import upward, and no private name (``_x``) used across
subpackages.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import w2s_harness
from w2s_harness._engine import codehash as _codehash
from w2s_harness._engine.codehash import (
    ENGINE_SUBPACKAGES,
    CodeHasher,
    from_target,
    import_closure,
    import_cycles,
    import_graph,
    runtime_imports,
)

CORE = Path(w2s_harness.__file__).parent


#: The concern subpackages, bottom layer first: a subpackage may import only those before it (and the top-level
#: ``hookspecs``); ``__init__`` (the public API, lazy) and the entry points may import anything.
LAYERS = ("_contracts", "_plugin_system", "_data", "_config", "_engine", "_plan", "_results", "_execution", "_cli")


def subpackage(rel: str) -> str:
    return rel.split(".")[0]


def test_the_core_has_no_import_cycle():
    cycles = import_cycles(import_graph(CORE))
    assert not cycles, "import cycles in the core:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_every_core_module_lives_in_a_concern_subpackage():
    top = {rel for rel in import_graph(CORE) if "." not in rel and rel not in LAYERS}
    assert top == {"__init__", "__main__", "hookspecs", "utils"}
    assert {subpackage(rel) for rel in import_graph(CORE)} - top == set(LAYERS)


def test_subpackages_import_only_the_layers_below_them():
    graph = import_graph(CORE)
    upward = sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps
                    if subpackage(a) in LAYERS and subpackage(b) in LAYERS
                    and LAYERS.index(subpackage(b)) > LAYERS.index(subpackage(a)))
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)
    # so the subpackage graph has no cycle either
    packages = {}
    for a, deps in graph.items():
        packages.setdefault(subpackage(a), set()).update(subpackage(b) for b in deps if subpackage(b) != subpackage(a))
    assert import_cycles(packages) == []


def private_imports_across_subpackages(directory: Path) -> list[str]:
    """``module: name`` for each private name (``_x``, not a dunder) a core module takes from a module of another
    subpackage: by ``from m import _x``, or as an attribute ``mod._x`` of a module it imported by name."""
    import ast

    graph = import_graph(directory)
    found = []
    for rel in graph:
        path = directory.joinpath(*rel.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        tree = ast.parse(path.read_bytes())
        modules_bound: dict[str, str] = {}
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            target = from_target(node, rel, graph)
            if target is None:
                continue
            for a in node.names:
                full = ".".join(target + [a.name])
                if full in graph:  # a module imported by name
                    modules_bound[a.asname or a.name] = full
                elif target and subpackage(".".join(target)) != subpackage(rel) \
                        and a.name.startswith("_") and not a.name.startswith("__"):
                    found.append(f"{rel}: {'.'.join(target)}.{a.name}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in modules_bound and node.attr.startswith("_") \
                    and not node.attr.startswith("__") \
                    and subpackage(modules_bound[node.value.id]) != subpackage(rel):
                found.append(f"{rel}: {modules_bound[node.value.id]}.{node.attr}")
    return sorted(set(found))


def test_no_private_name_is_used_across_subpackages():
    found = private_imports_across_subpackages(CORE)
    assert not found, "private names used across subpackages (make them public or move them):\n" + "\n".join(found)


def test_the_private_name_check_sees_both_forms(tmp_path):
    pkg = tmp_path / "w2s_harness"
    for sub in ("_a", "_b"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "_a" / "x.py").write_text("def _hidden(): pass\ndef shown(): pass\n")
    (pkg / "_a" / "y.py").write_text("from .x import _hidden\n")  # same subpackage: allowed
    (pkg / "_b" / "z.py").write_text(textwrap.dedent("""
        from .._a.x import _hidden, shown
        from .._a import x

        def f():
            return x._hidden, x.shown, x.__name__
    """))
    assert private_imports_across_subpackages(pkg) == ["_b.z: _a.x._hidden"]
    assert import_graph(pkg)["_b.z"] == {"_a", "_a.x"}


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


def test_the_engine_is_its_subpackages_and_their_import_closure():
    """The engine is computed per subpackage: every module of ``_engine`` and ``_contracts`` and every module they
    import, transitively, from the graph."""
    graph = import_graph(CORE)
    engine = set(_codehash.ENGINE_MODULES)
    roots = {rel for rel in graph if subpackage(rel) in ENGINE_SUBPACKAGES}
    assert roots and engine == import_closure(graph, roots)
    # what the ops run: the op functions, the stage data model (Subset.indices), the training loop and the probe,
    # the feature cache, the splits, the component contracts, the loss base classes
    assert {"_engine.ops", "_engine.stage", "_engine.training", "_engine.predict", "_engine.probe", "_data.choice",
            "_data.features", "_data.datasets", "_contracts.components", "_data.difficulty", "_contracts.loss_base",
            "_contracts.checks", "_engine.torch_settings"} <= engine
    # what decides which stages exist, runs them or reports them: never engine code
    assert not {subpackage(rel) for rel in engine} & {"_plan", "_config", "_cli", "_execution", "_results"}
    assert "__init__" not in engine


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
        name = f"w2s_harness.{module}"  # module: relative to the package, e.g. "_plan.planner"
        source = Path(real(name)).read_text()
        assert source.count(old) == 1, old
        copies[name] = tmp_path / f"{module}.py"
        copies[name].write_text(source.replace(old, new))

    return edit


def test_a_planner_edit_leaves_the_engine_fingerprint_and_an_op_edit_changes_it(edited):
    before = CodeHasher().engine()
    edited("_plan.planner", "    return (len(name), name) < (len(other), other)",
           "    return (len(name), name) <= (len(other), other)")  # planning only: which duplicate name wins
    assert CodeHasher().engine() == before
    edited("_plan.identity", '        key = ("loss", ref_key(ref))', '        key = ("a loss", ref_key(ref))')
    assert CodeHasher().engine() == before
    edited("_engine.stage", "permutation(rows)", "permutation(rows[::-1])")  # Subset.indices: ops run it
    after_stage = CodeHasher().engine()
    assert after_stage != before
    edited("_engine.ops", "keep = np.sort(order)", "keep = np.sort(order[::-1])")  # the filter op
    assert CodeHasher().engine() not in (before, after_stage)


def test_a_planner_edit_changes_no_stage_id_and_a_subset_edit_every_one(tmp_path, edited):
    from test_pipeline import write_config

    from w2s_harness import create_plugin_manager, load_config, make_plan

    cfg = load_config(write_config(tmp_path, seeds="[0]"))

    def ids() -> list[str]:
        return [s.id for s in make_plan(cfg, create_plugin_manager()).stages]

    before = ids()
    edited("_plan.planner", "STAGE_FORMAT = 2\n", "STAGE_FORMAT = 2\nPLANNER_ONLY = 1\n")
    assert ids() == before
    edited("_engine.stage", "permutation(rows)", "permutation(rows[::-1])")
    after = ids()
    assert len(after) == len(before) and not set(after) & set(before)


def test_a_module_an_op_starts_to_import_joins_the_engine(edited):
    assert "_results.report" not in CodeHasher().engine_modules()
    edited("_engine.ops", "def op_filter(ctx: RunContext, stage: Stage, upstream):\n",
           "def op_filter(ctx: RunContext, stage: Stage, upstream):\n    from .._results import report  # noqa\n")
    modules = CodeHasher().engine_modules()
    assert {"_results", "_results.report", "_results.results"} <= set(modules) and "_plan.planner" not in modules


def test_runtime_imports_ignore_an_unparsable_source():
    assert runtime_imports(b"def (:", "a", {"a", "b"}) == set()
