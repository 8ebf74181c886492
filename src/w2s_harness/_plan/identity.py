"""Content-complete identities of the components a plan uses: what is hashed into stage ids.

A component's identity is its registry name, every parameter its factory sees (defaults filled in from the
signature, see :meth:`Registry.resolved <w2s_harness.Registry.resolved>`), the code fingerprint of the module that
defines it (:mod:`w2s_harness._engine.codehash`; a stage op's is hashed beside its stages' specs), and, for models and datasets,
what the instance itself reports through ``identity()`` (a model's checkpoint content hash, a dataset's content
fingerprint). Two runs reuse a stage only when all of it is equal; anything else is new work.
"""

from __future__ import annotations

from typing import Any

from .._engine.codehash import CodeHasher
from .._engine.stage import ref_key


class Identities:
    """Memoised identities for one plan (each model is created and each file hashed once)."""

    def __init__(self, pm, code: CodeHasher | None = None, *, content: bool = True):
        """:param content: ``False`` leaves out what needs the data or the checkpoints (``model.identity()``,
            ``dataset.identity()``): for ``validate --offline``, whose stage ids are then not the run's."""
        self.pm = pm
        self.content = content
        self.code = code or CodeHasher()
        self._memo: dict[tuple[str, str], dict[str, Any]] = {}
        self._engine: str | None = None

    def component(self, kind: str, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """``{"name", "params" (resolved), "code" ({module: digest})}`` of one component."""
        registry = self.pm.registry(kind)
        entry, _ = registry.resolve(name)
        return {"name": name, "params": registry.resolved(name, params), "code": self.code.component(entry.factory)}

    def model(self, ref: dict[str, Any]) -> dict[str, Any]:
        """Identity of a model reference ``{"name": ..., **params}``: the component plus ``model.identity()``."""
        from .._contracts.components import check_model

        key = ("model", ref_key(ref))
        if key not in self._memo:
            params = {k: v for k, v in ref.items() if k != "name"}
            ident = self.component("model", ref["name"], params)
            model = check_model(self.pm.create("model", ref["name"], **params), ref["name"])
            if self.content:
                ident["instance"] = model.identity()
            self._memo[key] = ident
        return self._memo[key]

    def loss(self, ref: dict[str, Any]) -> dict[str, Any]:
        """Identity of a loss reference (creating the loss once checks its parameters)."""
        key = ("loss", ref_key(ref))
        if key not in self._memo:
            params = {k: v for k, v in ref.items() if k != "name"}
            self.pm.create("loss", ref["name"], **params)
            self._memo[key] = self.component("loss", ref["name"], params)
        return self._memo[key]

    def op(self, name: str) -> dict[str, str]:
        """Code fingerprint ``{module: digest}`` of a registered stage op: the module that defines its factory and
        the modules of its package it imports. Empty for the built-in ops, whose code is the engine's
        (:meth:`engine`). An op's parameters are hashed through its stages' specs."""
        key = ("op", name)
        if key not in self._memo:
            entry, _ = self.pm.registry("op").resolve(name)
            self._memo[key] = self.code.component(entry.factory)
        return self._memo[key]

    def dataset(self, name: str, params: dict[str, Any], dataset: Any) -> dict[str, Any]:
        """Identity of the run's dataset: the component plus ``dataset.identity()`` (its content fingerprint)."""
        ident = self.component("dataset", name, params)
        if self.content:
            ident["instance"] = dataset.identity()
        return ident

    def engine(self) -> str:
        """Digest of the harness code every stage runs (ops, training loop, kernels)."""
        if self._engine is None:
            self._engine = self.code.engine()
        return self._engine


__all__ = ["Identities"]
