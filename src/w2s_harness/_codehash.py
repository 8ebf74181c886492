"""Code fingerprints: which source a stage's output depends on, hashed into its id.

A stage id must change when the code that computes the stage changes, or a re-run serves stale numbers from the
cache. Three kinds of code go in:

* the **engine**: the harness modules and kernels every stage op runs (:data:`ENGINE_MODULES`, the ``kernels``
  package). Editing the training loop reruns every train stage (and so everything downstream);
* each **component's module**: the module that defines a model's, loss's or dataset's factory, the modules of its
  base classes, and the sibling modules they import (found statically). Editing a loss reruns exactly the stages
  that train with it, whether the loss is built in or comes from a third-party plugin;
* nothing else: the CLI, the report, the planner and the strategies decide *which* stages exist, not what a stage
  computes (a strategy's edit that changes a stage's spec changes its id through the spec).

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
from pathlib import Path
from typing import Any

#: Harness modules whose code determines what a stage computes (ops, training loop, feature cache, splits, subset
#: selection, loss base and input checks). Relative to the ``w2s_harness`` package.
ENGINE_MODULES = (
    "_ops", "_training", "_probe", "_features", "_components", "_datasets", "_plan", "_loss_base", "_loss_checks",
    "_torch_settings", "_choice", "_difficulty",
)
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


def source_digest(source: str | bytes) -> str:
    """sha256 of the code in ``source`` (its syntax tree without docstrings); raw bytes if it does not parse."""
    try:
        tree = _strip_docstrings(ast.parse(source))
        blob = ast.dump(tree, annotate_fields=False, include_attributes=False).encode()
    except SyntaxError:
        blob = source if isinstance(source, bytes) else source.encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class CodeHasher:
    """Memoised code fingerprints of modules and components (one per plan)."""

    def __init__(self):
        self._files: dict[str, tuple[tuple[int, int], str]] = {}
        self._closures: dict[str, dict[str, str]] = {}

    # ---------------------------------------------------------------- files and modules
    def file(self, path: str | os.PathLike) -> str:
        """Code digest of one source file (memoised by mtime and size)."""
        p = str(path)
        st = os.stat(p)
        key = (st.st_mtime_ns, st.st_size)
        have = self._files.get(p)
        if have is not None and have[0] == key:
            return have[1]
        digest = source_digest(Path(p).read_bytes())
        self._files[p] = (key, digest)
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

    def module(self, name: str) -> str:
        """Digest of module ``name``'s source, or of its version where there is no source (a compiled module)."""
        path = self.module_file(name)
        if path is not None:
            return self.file(path)
        mod = sys.modules.get(name) or importlib.import_module(name)
        return "nosource:" + str(getattr(mod, "__version__", None) or getattr(mod, "__file__", name))

    def closure(self, name: str) -> dict[str, str]:
        """``{module: digest}`` for ``name`` and the modules of its own package it imports, transitively.

        "Its own package" is the module's parent package (for a top-level module, the module itself): a plugin
        split over ``mypkg/losses.py`` and ``mypkg/_math.py`` is hashed whole, while the libraries it imports
        (torch, the harness's public API) are not; the harness's own code is the engine's."""
        if name in self._closures:
            return self._closures[name]
        package = name.rpartition(".")[0] or name
        out: dict[str, str] = {}
        todo = [name]
        while todo:
            mod = todo.pop()
            if mod in out:
                continue
            out[mod] = self.module(mod)
            path = self.module_file(mod)
            if path is None:
                continue
            for dep in _imports(path, mod):
                if (dep == package or dep.startswith(package + ".")) and dep not in out \
                        and self.module_file(dep) is not None:
                    todo.append(dep)
        self._closures[name] = dict(sorted(out.items()))
        return self._closures[name]

    # ---------------------------------------------------------------- what stages depend on
    def engine(self) -> str:
        """One digest over the engine modules and packages."""
        h = hashlib.sha256()
        for rel in ENGINE_MODULES:
            name = f"w2s_harness.{rel}"
            h.update(f"{name}={self.module(name)}\n".encode())
        for pkg in ENGINE_PACKAGES:
            path = self.module_file(pkg)
            if path is None:
                h.update(f"{pkg}=missing\n".encode())
                continue
            for f in sorted(Path(path).parent.glob("*.py")):
                h.update(f"{pkg}/{f.name}={self.file(f)}\n".encode())
        return h.hexdigest()[:16]

    def component(self, factory: Any) -> dict[str, str]:
        """``{module: digest}`` of the code behind a registered factory: its module and, for a class, the modules
        of its base classes outside the harness, each with its package-local imports."""
        modules = {getattr(factory, "__module__", None)}
        if inspect.isclass(factory):
            modules.update(getattr(c, "__module__", None) for c in factory.__mro__[1:])
        out: dict[str, str] = {}
        for mod in sorted(m for m in modules if m):
            if mod == "builtins" or mod.startswith("w2s_harness.") and not mod.startswith("w2s_harness.plugins") \
                    or _is_library(mod):
                continue  # builtins, the engine (hashed separately), third-party libraries (versioned)
            out.update(self.closure(mod))
        return dict(sorted(out.items()))


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


__all__ = ["ENGINE_MODULES", "CodeHasher", "source_digest"]
