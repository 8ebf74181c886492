"""Code fingerprints: which source a stage's output depends on, hashed into its id.

A stage id must change when the code that computes the stage changes, or a re-run serves stale numbers from the
cache. Three kinds of code go in:

* the **engine**: the harness modules and kernels every stage op runs (:data:`ENGINE_MODULES`, the ``kernels``
  package): the ``_engine`` and ``_contracts`` subpackages and what they import. Editing the training loop reruns every train stage (and so everything downstream). The engine
  modules are computed, not listed by hand: :data:`ENGINE_SUBPACKAGES`' modules and every harness module they import,
  transitively, as the import graph of the sources has it (:func:`runtime_imports`: imports inside functions
  count, ``if TYPE_CHECKING:`` ones do not): a module an op starts to import joins the engine by itself;
* each **component's module**: the module that defines a model's, loss's or dataset's factory, the modules of its
  base classes, and the sibling modules they import (found statically). Editing a loss reruns exactly the stages
  that train with it, whether the loss is built in or comes from a third-party plugin;
* nothing else: the CLI, the planner, the report and the strategies decide *which* stages exist, not what a
  stage computes (a strategy's or the planner's edit that changes a stage's spec changes its id through the
  spec). The ops import the stage data model (``_engine.stage``: :class:`~w2s_harness.Subset` and its row selection,
  :class:`~w2s_harness.StageOp`), never the planner (``_plan.planner``: :class:`~w2s_harness.PlanBuilder`,
  :func:`~w2s_harness.make_plan`), so editing the planner reruns nothing.

A module that is a **catalogue** of entries (the dataset recipes: one module, one row and a few functions per
dataset) fingerprints each entry on its own: the factory names the catalogue's top-level name
(``code_catalogue = "RECIPES"``), the definitions reachable only through it are left out of the module's digest,
and the factory adds its own entry's digest (``code_entry(hasher) -> {key: digest}``, typically through
:meth:`CodeHasher.function`). Editing one entry then reruns the stages of that entry only.

Sources are hashed as their syntax tree with docstrings removed (comments are not in the tree), so editing
documentation never invalidates a cache, while any change to code does. Hashes are memoised per file by
``(mtime_ns, size)``, inside one :class:`CodeHasher` (so one run reads each file once).
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

#: The subpackages whose modules the engine starts from (relative to the ``w2s_harness`` package): ``_engine``,
#: the stage ops (every stage runs through :func:`~w2s_harness._engine.ops.execute` and the built-in ops), the stage
#: data model (:meth:`~w2s_harness.Subset.indices` selects every stage's rows), the training loops and the probe;
#: and ``_contracts``, the base classes and checks a component builds on (:class:`~w2s_harness.BaseLoss` and the
#: validators run inside a loss, whose own fingerprint leaves harness modules to the engine).
#: :data:`ENGINE_MODULES` is every module of these subpackages and every harness module they import, transitively:
#: today also the data modules the ops read rows and features through (``_data``) and the registry and kinds of
#: the built-in op registry (``_plugin_system``), plus ``hookspecs`` (``hookimpl``). Never in it: the planner
#: (``_plan``), config, CLI, execution (runner, executors, store) and results: they decide which stages run, where,
#: and how results read.
ENGINE_SUBPACKAGES = ("_engine", "_contracts")
#: Packages hashed whole as part of the engine (every module under them).
ENGINE_PACKAGES = ("w2s_harness.kernels",)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _defined(node: ast.stmt) -> set[str]:
    """The names a top-level statement defines (a function, a class, an assignment's plain targets)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
        node, ast.AnnAssign) else []
    return {t.id for t in targets if isinstance(t, ast.Name)}


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def catalogue_names(tree: ast.Module, root: str) -> frozenset[str]:
    """The top-level names of ``tree`` reachable only through the definition of ``root`` (``root`` included):
    what a module's digest leaves out when each entry of the catalogue ``root`` is fingerprinted on its own. A
    definition the rest of the module uses (directly or through another definition) stays in."""
    defs: dict[str, list[ast.stmt]] = {}
    for node in tree.body:
        for name in _defined(node):
            defs.setdefault(name, []).append(node)
    if root not in defs:
        return frozenset()

    def reach(start: set[str]) -> set[str]:
        seen: set[str] = set()
        todo = [n for n in start if n in defs and n != root]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            todo += [n for node in defs[name] for n in _names(node) if n in defs and n != root and n not in seen]
        return seen

    through_root = reach({n for node in defs[root] for n in _names(node)})
    rest = [node for node in tree.body if not (_defined(node) & (through_root | {root}))]
    kept = reach({n for node in rest for n in _names(node)})
    return frozenset((through_root - kept) | {root})


def source_digest(source: str | bytes, catalogue: str | None = None) -> str:
    """sha256 of the code in ``source`` (its syntax tree without docstrings); raw bytes if it does not parse.
    ``catalogue``: leave out the definitions reachable only through that top-level name (:func:`catalogue_names`)."""
    try:
        tree = _strip_docstrings(ast.parse(source))
        if catalogue is not None:
            drop = catalogue_names(tree, catalogue)
            tree.body = [node for node in tree.body if not _defined(node) or not _defined(node) <= drop]
        blob = ast.dump(tree, annotate_fields=False, include_attributes=False).encode()
    except SyntaxError:
        blob = source if isinstance(source, bytes) else source.encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class CodeHasher:
    """Memoised code fingerprints of modules and components (one per plan)."""

    def __init__(self):
        self._files: dict[tuple[str, str | None], tuple[tuple[int, int], str]] = {}
        self._closures: dict[tuple[str, tuple], dict[str, str]] = {}
        self._functions: dict[Any, str] = {}
        self._imports: dict[str, tuple[tuple[int, int], frozenset[str]]] = {}
        self._core: frozenset[str] | None = None

    # ---------------------------------------------------------------- files and modules
    def file(self, path: str | os.PathLike, catalogue: str | None = None) -> str:
        """Code digest of one source file (memoised by mtime and size); ``catalogue``: see :func:`source_digest`."""
        p = str(path)
        st = os.stat(p)
        key = (st.st_mtime_ns, st.st_size)
        have = self._files.get((p, catalogue))
        if have is not None and have[0] == key:
            return have[1]
        digest = source_digest(Path(p).read_bytes(), catalogue)
        self._files[(p, catalogue)] = (key, digest)
        return digest

    @staticmethod
    def module_file(name: str) -> str | None:
        """The source file of module ``name`` (without importing it if it is not imported yet)."""
        mod = sys.modules.get(name)
        path = getattr(mod, "__file__", None) if mod is not None else None
        if path is None:
            try:
                spec = importlib.util.find_spec(name)
            except (ImportError, ValueError):
                return None
            path = spec.origin if spec is not None else None
        if path is None or not path.endswith(".py") or not os.path.isfile(path):
            return None
        return path

    def module(self, name: str, catalogue: str | None = None) -> str:
        """Digest of module ``name``'s source, or of its version where there is no source (a compiled module)."""
        path = self.module_file(name)
        if path is not None:
            return self.file(path, catalogue)
        mod = sys.modules.get(name) or importlib.import_module(name)
        return "nosource:" + str(getattr(mod, "__version__", None) or getattr(mod, "__file__", name))

    def closure(self, name: str, catalogues: dict[str, str] | None = None) -> dict[str, str]:
        """``{module: digest}`` for ``name`` and the modules of its own package it imports, transitively.

        "Its own package" is the module's parent package (for a top-level module, the module itself): a plugin
        split over ``mypkg/losses.py`` and ``mypkg/_math.py`` is hashed whole, while the libraries it imports
        (torch, the harness's public API) are not; the harness's own code is the engine's. ``catalogues``:
        ``{module: catalogue name}`` of modules hashed without their catalogue (see the module docstring)."""
        catalogues = catalogues or {}
        memo = (name, tuple(sorted(catalogues.items())))
        if memo in self._closures:
            return self._closures[memo]
        package = name.rpartition(".")[0] or name
        out: dict[str, str] = {}
        todo = [name]
        while todo:
            mod = todo.pop()
            if mod in out:
                continue
            out[mod] = self.module(mod, catalogues.get(mod))
            path = self.module_file(mod)
            if path is None:
                continue
            for dep in _imports(path, mod):
                if (dep == package or dep.startswith(package + ".")) and dep not in out \
                        and self.module_file(dep) is not None:
                    todo.append(dep)
        self._closures[memo] = dict(sorted(out.items()))
        return self._closures[memo]

    def function(self, fn: Any) -> str:
        """Digest of a function's code and of what it uses from its own module, transitively: the module's
        functions and classes it names (their code), and its constants (their values). Names from elsewhere (the
        standard library, numpy, other modules) are not followed; a module of the same package is in the
        component's closure anyway."""
        key = (getattr(fn, "__module__", None), getattr(fn, "__qualname__", None), id(fn))
        if key not in self._functions:
            module = getattr(fn, "__module__", None)
            space = getattr(fn, "__globals__", None) or vars(sys.modules.get(module, object()))
            parts: dict[str, str] = {}
            todo: list[tuple[str, Any]] = [("", fn)]
            while todo:
                name, obj = todo.pop()
                if name in parts:
                    continue
                parts[name], used = _object_code(obj)
                for n in sorted(used - parts.keys()):
                    value = space.get(n)
                    if (inspect.isfunction(value) or inspect.isclass(value)) and value.__module__ == module:
                        todo.append((n, value))
                    elif isinstance(value, (str, bytes, int, float, bool, tuple, frozenset)) or (
                            value is None and n in space):
                        parts[n] = "value:" + repr(value)
            blob = "\n".join(f"{n}={d}" for n, d in sorted(parts.items())).encode()
            self._functions[key] = hashlib.sha256(blob).hexdigest()[:16]
        return self._functions[key]

    # ---------------------------------------------------------------- what stages depend on
    def engine(self) -> str:
        """One digest over the engine modules and packages."""
        h = hashlib.sha256()
        for rel in self.engine_modules():
            name = _core_name(rel)
            h.update(f"{name}={self.module(name)}\n".encode())
        for pkg in ENGINE_PACKAGES:
            path = self.module_file(pkg)
            if path is None:
                h.update(f"{pkg}=missing\n".encode())
                continue
            for f in sorted(Path(path).parent.glob("*.py")):
                h.update(f"{pkg}/{f.name}={self.file(f)}\n".encode())
        return h.hexdigest()[:16]

    def engine_modules(self) -> tuple[str, ...]:
        """The modules of :data:`ENGINE_SUBPACKAGES` and every harness module they import when they run, transitively (the modules
        :meth:`engine` hashes), sorted; names relative to the package, ``__init__`` for the package itself. Read
        from the sources (:meth:`module_file`), nothing is imported."""
        return tuple(sorted(_closure(self.core_imports, self.engine_roots())))

    def engine_roots(self) -> list[str]:
        """The modules of :data:`ENGINE_SUBPACKAGES` (a subpackage's ``__init__`` under the subpackage's name)."""
        return sorted(m for m in self.core_module_names() if m.split(".")[0] in ENGINE_SUBPACKAGES)

    def core_module_names(self) -> frozenset[str]:
        """The harness package's modules (:func:`core_modules`), listed once per hasher: every module's imports
        are read against the same list."""
        if self._core is None:
            package = self.module_file(PACKAGE)
            self._core = core_modules(Path(package).parent) if package else frozenset()
        return self._core

    def core_imports(self, rel: str) -> frozenset[str]:
        """The harness modules the harness module ``rel`` imports when it runs (:func:`runtime_imports`),
        memoised by the file's mtime and size."""
        path = self.module_file(_core_name(rel))
        if path is None:
            return frozenset()
        st = os.stat(path)
        key = (st.st_mtime_ns, st.st_size)
        have = self._imports.get(path)
        if have is not None and have[0] == key:
            return have[1]
        deps = frozenset(runtime_imports(Path(path).read_bytes(), rel, self.core_module_names()))
        self._imports[path] = (key, deps)
        return deps

    def component(self, factory: Any) -> dict[str, str]:
        """``{module: digest}`` of the code behind a registered factory: its module and, for a class, the modules
        of its base classes outside the harness, each with its package-local imports."""
        modules = {getattr(factory, "__module__", None)}
        catalogues: dict[str, str] = {}
        if inspect.isclass(factory):
            modules.update(getattr(c, "__module__", None) for c in factory.__mro__[1:])
            # a catalogue: the module whose class names it is hashed without it, and the entry adds its own digest
            owner = next((c for c in factory.__mro__ if "code_catalogue" in vars(c)), None)
            if owner is not None and isinstance(owner.code_catalogue, str):
                catalogues[owner.__module__] = owner.code_catalogue
        out: dict[str, str] = {}
        for mod in sorted(m for m in modules if m):
            if mod == "builtins" or mod.startswith("w2s_harness.") and not mod.startswith("w2s_harness.plugins") \
                    or _is_library(mod):
                continue  # builtins, the engine (hashed separately), third-party libraries (versioned)
            out.update(self.closure(mod, catalogues))
        entry = getattr(factory, "code_entry", None) if catalogues else None
        if callable(entry):
            out.update(entry(self))
        return dict(sorted(out.items()))


def _object_code(obj: Any) -> tuple[str, set[str]]:
    """``(digest, names it uses)`` of a function's or class's code: its syntax tree without docstrings, or, where
    the source cannot be read or parsed alone (a lambda inside an expression), its code object."""
    try:
        tree = _strip_docstrings(ast.parse(textwrap.dedent(inspect.getsource(obj))))
        used = _names(tree)
        blob = ast.dump(tree, annotate_fields=False, include_attributes=False)
    except (OSError, TypeError, SyntaxError):
        code = getattr(obj, "__code__", None)
        if code is None:
            return "opaque:" + getattr(obj, "__qualname__", repr(obj)), set()
        used = set(code.co_names)
        blob = repr((code.co_code, code.co_consts, code.co_names))
    return hashlib.sha256(blob.encode()).hexdigest()[:16], used


def _is_library(module: str) -> bool:
    """Modules from the standard library or a big framework a component may subclass (torch.nn.Module)."""
    top = module.partition(".")[0]
    return top in sys.stdlib_module_names or top in ("torch", "numpy", "transformers", "typing_extensions")


def _imports(path: str, module: str) -> list[str]:
    """Absolute names of the modules ``module`` (at ``path``) imports, relative imports resolved."""
    try:
        tree = ast.parse(Path(path).read_bytes())
    except SyntaxError:
        return []
    is_pkg = os.path.basename(path) == "__init__.py"
    base = module if is_pkg else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1]) if node.level > 1 else base
                prefix = f"{anchor}.{node.module}" if node.module else anchor
            else:
                prefix = node.module or ""
            out.append(prefix)
            out.extend(f"{prefix}.{a.name}" for a in node.names)  # `from pkg import submodule`
    return out


# ------------------------------------------------------------------------------------ the harness's import graph
PACKAGE = "w2s_harness"


def _core_name(rel: str) -> str:
    return PACKAGE if rel == "__init__" else f"{PACKAGE}.{rel}"


def core_modules(directory: str | os.PathLike) -> frozenset[str]:
    """The modules of the harness package at ``directory``, named relative to it: ``__init__`` for the package
    itself, ``hookspecs`` for a top-level module, ``_engine.ops`` for a module of a subpackage and ``_engine`` for
    the subpackage's ``__init__``. The folders ``kernels`` and ``plugins`` are not under ``directory`` (their
    sources live at the repository root), so they are never harness modules."""
    root = Path(directory)
    out = set()
    for p in root.rglob("*.py"):
        parts = p.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out.add(".".join(parts))
    return frozenset(out)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _base(rel: str, modules) -> list[str]:
    """The package a relative import in module ``rel`` starts from, as name parts (``[]``: the top package)."""
    if rel == "__init__":
        return []
    parts = rel.split(".")
    is_package = any(m.startswith(rel + ".") for m in modules)  # a subpackage's __init__
    return parts if is_package else parts[:-1]


def from_target(node: ast.ImportFrom, rel: str, modules) -> list[str] | None:
    """The harness module (name parts relative to the package, ``[]``: the package itself) that ``from ...
    import`` statement ``node`` of harness module ``rel`` imports from; ``None`` when it is outside the harness
    (another library, or a relative import above the package)."""
    parts = node.module.split(".") if node.module else []
    if node.level == 0:
        return parts[1:] if parts and parts[0] == PACKAGE else None
    base = _base(rel, modules)
    if node.level - 1 > len(base):
        return None
    return base[: len(base) - (node.level - 1)] + parts


def runtime_imports(source: str | bytes, rel: str, modules: frozenset[str] | set[str]) -> set[str]:
    """The harness modules (of ``modules``, named as :func:`core_modules` names them) that the harness module
    ``rel`` with ``source`` imports when its code runs: every ``import`` statement at any depth (one inside a
    function runs when the function does), except under ``if TYPE_CHECKING:``, which never runs (annotations
    only; its ``else`` does). ``from pkg import name`` imports the module ``pkg.name`` if there is one and the
    package ``pkg`` (its ``__init__``); names outside ``modules`` (``kernels``, ``plugins``) are left out."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    out: set[str] = set()

    def add(parts: list[str]) -> None:
        name = ".".join(parts) if parts else "__init__"
        if name in modules:
            out.add(name)
            # importing ``_data.choice`` runs the subpackage's ``__init__`` first (the top package's always runs)
            out.update(p for p in (".".join(parts[:i]) for i in range(1, len(parts))) if p in modules)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.orelse:
                    visit_stmt(stmt)
            else:
                visit_stmt(child)

    def visit_stmt(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == PACKAGE:
                    add(parts[1:])
        elif isinstance(node, ast.ImportFrom):
            target = from_target(node, rel, modules)
            if target is None:
                return
            if node.module:
                add(target)
            for a in node.names:
                name = ".".join(target + [a.name])
                if name in modules:
                    add(target + [a.name])
                elif not node.module:
                    add(target)  # a name of the package (``from .. import __version__``): its ``__init__``
        else:
            visit(node)

    visit(tree)
    out.discard(rel)
    return out


def import_graph(directory: str | os.PathLike) -> dict[str, set[str]]:
    """``{module: the harness modules it imports when it runs}`` for every module of the harness package at
    ``directory`` (:func:`runtime_imports`), read from the sources."""
    modules = core_modules(directory)
    root = Path(directory)

    def path(rel: str) -> Path:
        if rel == "__init__":
            return root / "__init__.py"
        p = root.joinpath(*rel.split("."))
        return p / "__init__.py" if p.is_dir() else p.with_suffix(".py")

    return {rel: runtime_imports(path(rel).read_bytes(), rel, modules) for rel in sorted(modules)}


def import_closure(graph: dict[str, set[str]], roots) -> set[str]:
    """``roots`` and every module they import, transitively, in ``graph``."""
    return _closure(lambda rel: graph.get(rel, ()), roots)


def _closure(imports, roots) -> set[str]:
    """``roots`` and everything ``imports(module)`` reaches from them (read lazily, each module once)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        rel = todo.pop()
        if rel not in seen:
            seen.add(rel)
            todo.extend(imports(rel))
    return seen


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One import cycle ``[a, b, ..., a]`` per group of modules that import each other (a strongly connected
    component of ``graph``): the shortest from the group's first module, so each group is named once."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(v: str) -> None:  # Tarjan's algorithm (the core is a few dozen modules: recursion is fine)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1 or v in graph.get(v, ()):
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    cycles = []
    for group in sorted(groups, key=min):
        start = min(group)
        paths = {start: [start]}
        frontier = [start]
        cycle = None
        while frontier and cycle is None:  # breadth first: the shortest way back to start
            nxt = []
            for v in frontier:
                for w in sorted(graph.get(v, ())):
                    if w == start:
                        cycle = paths[v] + [start]
                        break
                    if w in group and w not in paths:
                        paths[w] = paths[v] + [w]
                        nxt.append(w)
                if cycle is not None:
                    break
            frontier = nxt
        cycles.append(cycle)
    return cycles


def __getattr__(name: str) -> Any:
    """``ENGINE_MODULES``: the engine's modules, computed from the sources on each access
    (:meth:`CodeHasher.engine_modules`), never a hand-written list."""
    if name == "ENGINE_MODULES":
        return CodeHasher().engine_modules()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ENGINE_MODULES", "ENGINE_SUBPACKAGES",  # noqa: F822 - ENGINE_MODULES: computed (__getattr__)
           "CodeHasher", "catalogue_names", "from_target", "import_closure", "import_cycles",
           "import_graph", "runtime_imports", "source_digest"]
