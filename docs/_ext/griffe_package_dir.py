"""Griffe extension for the API reference: make griffe see the package as Python does.

1. **Subpackages outside ``src/``.** ``pyproject.toml`` maps ``w2s_harness.kernels`` to ``kernels/`` and
   ``w2s_harness.plugins`` to ``plugins/`` (``[tool.setuptools] package-dir``). Griffe finds ``w2s_harness`` in
   ``src/`` (or through the editable install, which points there too) and so never sees those folders. This
   extension reads the mapping and visits each mapped folder as a submodule of the loaded package, with the
   loader's own parser and collections, so ``::: w2s_harness.kernels`` works for an editable install, a wheel
   and a clone alike.
2. **A computed ``__all__``.** Griffe evaluates ``__all__`` statically, which works for a list literal (and
   ``+=`` / ``.extend``), not for an expression such as ``sorted([..., *_LAZY])``. When the static value is
   empty although the module assigns ``__all__``, the extension imports the package (which is import-light)
   and takes the runtime ``__all__``, so the reference documents exactly the public names.
3. **Sphinx roles.** The docstrings use ``:param x:`` fields (parsed by griffe's sphinx parser) and Sphinx
   cross-reference roles such as ``:class:`~w2s_harness._plugin_system.registry.Registry```, which Markdown would print
   literally. A role whose target is a public name becomes a link to its entry in the API reference; any
   other role becomes inline code. A reST literal-block marker (``text::``) becomes ``text:``.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any

import griffe

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
ROLE_RE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|exc|mod|obj|const|type):`([~!]?)([^`<>]+)`")
LITERAL_MARKER_RE = re.compile(r"(?<=\S)::[ \t]*$", re.MULTILINE)


def package_dirs(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, Path]:
    """``{"w2s_harness.kernels": <root>/kernels, ...}`` from ``[tool.setuptools] package-dir``."""
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    mapping = data.get("tool", {}).get("setuptools", {}).get("package-dir", {})
    return {name: (pyproject.parent / folder).resolve() for name, folder in mapping.items() if name}


class PackageDirs(griffe.Extension):
    """Attach ``package-dir`` folders, take a computed ``__all__`` from the import, and rewrite Sphinx roles."""

    def __init__(self, pyproject: str | None = None) -> None:
        super().__init__()
        self.mapping = package_dirs(Path(pyproject).resolve() if pyproject else ROOT / "pyproject.toml")

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if not any(name.split(".", 1)[0] == pkg.name for name in self.mapping):
            return
        try:
            public = set(getattr(importlib.import_module(pkg.name), "__all__", ()))
        except ImportError as exc:
            raise ImportError(f"the API reference imports {pkg.name} for its __all__; install the package "
                              f"first (pip install -e '.[docs]'): {exc}") from exc
        if "__all__" in pkg.members and not pkg.exports:
            pkg.exports = sorted(public)
        for dotted, folder in sorted(self.mapping.items()):
            parent_path, _, name = dotted.rpartition(".")
            if parent_path.split(".", 1)[0] != pkg.name or not (folder / "__init__.py").is_file():
                continue
            try:
                parent = pkg if parent_path == pkg.name else pkg.get_member(parent_path.split(".", 1)[1])
            except KeyError:
                continue
            if name not in parent.members:
                self._load(name, folder, parent, loader)
        self._rewrite_docstrings(pkg, pkg.name, public)

    def _load(self, name: str, path: Path, parent: griffe.Module, loader: griffe.GriffeLoader) -> None:
        init = path / "__init__.py" if path.is_dir() else path
        code = init.read_text(encoding="utf-8-sig")
        loader.lines_collection[init] = code.splitlines(keepends=False)
        module = griffe.visit(
            name,
            filepath=init,
            code=code,
            extensions=loader.extensions,
            parent=parent,
            docstring_parser=loader.docstring_parser,
            docstring_options=loader.docstring_options,
            lines_collection=loader.lines_collection,
            modules_collection=loader.modules_collection,
        )
        parent.set_member(name, module)
        if path.is_dir():
            for child in sorted(path.iterdir()):
                if child.suffix == ".py" and child.name != "__init__.py":
                    self._load(child.stem, child, module, loader)
                elif child.is_dir() and (child / "__init__.py").is_file():
                    self._load(child.name, child, module, loader)

    def _rewrite_docstrings(self, obj: griffe.Object, root: str, public: set[str]) -> None:
        def role(match: re.Match) -> str:
            tilde, target = match.group(1), match.group(2).strip().removesuffix("()")
            last = target.rsplit(".", 1)[-1]
            if last in public and (target == last or target.startswith(root + ".")):
                shown = last if tilde == "~" or "." not in target else f"{root}.{last}"
                return f"[`{shown}`][{root}.{last}]"
            return f"`{last if tilde == '~' else target}`"

        if obj.docstring is not None:
            text = ROLE_RE.sub(role, obj.docstring.value)
            obj.docstring.value = LITERAL_MARKER_RE.sub(":", text)
        for member in obj.members.values():
            if not member.is_alias:
                self._rewrite_docstrings(member, root, public)
