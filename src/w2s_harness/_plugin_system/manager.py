"""The plugin manager: built-in plugins + the ``w2s_harness`` entry-point group + explicit plugins.

It holds one piece of process-wide state: the default plugin manager of :func:`plugin_manager`, created on first
use (``reload=True`` rebuilds it); ``create_plugin_manager`` and ``main(argv, plugins=...)`` build fresh ones.
It is not the only module-level state in the process: some modules keep memo caches (the hub's reachability per
endpoint in ``_data.hub``, the Triton kernels' dtype probe, the built-in plugins' loaded tables and checkpoint configs,
``functools.cache`` helpers), and worker processes keep their run context (the executors); none of them decides
which plugins are loaded.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from .. import hookspecs
from .._contracts.errors import PluginError
from .kinds import KINDS
from .registry import Registry

ENTRY_POINT_GROUP = "w2s_harness"


@dataclass
class PluginInfo:
    """What ``w2s-harness plugins`` shows for one plugin."""

    name: str
    distribution: str
    version: str
    builtin: bool


@dataclass
class LoadError:
    name: str
    error: str


@dataclass
class PluginManager:
    """A pluggy manager plus the component registries its plugins filled."""

    pm: pluggy.PluginManager
    registries: dict[str, Registry]
    plugins: list[PluginInfo] = field(default_factory=list)
    load_errors: list[LoadError] = field(default_factory=list)

    @property
    def hook(self):
        return self.pm.hook

    def registry(self, kind: str) -> Registry:
        return self.registries[kind]

    def create(self, kind: str, name: str, **params: Any) -> Any:
        return self.registries[kind].create(name, **params)

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        """Register ``plugin`` (an object with ``@hookimpl`` methods) for the hooks called from now on: a
        per-run observer registered from ``w2s_configure``. The registration hooks have run already, so
        components are added through them, not here."""
        return self.pm.register(plugin, name=name)

    def unregister(self, plugin: Any = None, name: str | None = None) -> Any:
        """Remove a plugin registered with :meth:`register` (by object or by name)."""
        return self.pm.unregister(plugin, name=name)

    def get_plugin(self, name: str) -> Any:
        """The plugin registered under ``name``, or ``None``."""
        return self.pm.get_plugin(name)

    def other_hooks(self, plugin: str) -> list[str]:
        """The non-registration hooks ``plugin`` implements (observers, CLI options), sorted."""
        obj = self.pm.get_plugin(plugin)
        register = {k.hook for k in KINDS}
        callers = self.pm.get_hookcallers(obj) or [] if obj is not None else []
        return sorted(c.name for c in callers if c.name not in register)

    def registered_by(self, plugin: str) -> dict[str, list[str]]:
        """Component names per kind that ``plugin`` registered."""
        out: dict[str, list[str]] = {}
        for kind, reg in self.registries.items():
            names = [e.name for e in reg if e.plugin == plugin]
            if names:
                out[kind] = names
        return out


def _strict_from_env() -> bool:
    return os.environ.get("W2S_STRICT_PLUGINS", "").strip().lower() in ("1", "true", "yes", "on")


def _dist_version(dist_name: str) -> str:
    try:
        return metadata.version(dist_name)
    except metadata.PackageNotFoundError:
        return "unknown"


def create_plugin_manager(
    plugins: Iterable[Any] = (),
    *,
    strict: bool | None = None,
    entry_points: bool = True,
) -> PluginManager:
    """Build a fresh plugin manager.

    :param plugins: extra plugin objects or module names to register after the built-ins and entry points
        (how tests and ``main(argv, plugins=[...])`` inject plugins in-process).
    :param strict: make a plugin that fails to import fatal; defaults to env ``W2S_STRICT_PLUGINS``.
    :param entry_points: load the ``w2s_harness`` entry-point group (turned off by some tests).
    """
    from ..plugins import BUILTIN_PLUGINS  # the built-ins register through the same hooks as anyone

    strict = _strict_from_env() if strict is None else strict
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    manager = PluginManager(pm, {kind.name: Registry(kind.name) for kind in KINDS})
    own_version = _dist_version("w2s-harness")

    # the built-in stage ops are the engine's code: the core registers them itself, through the same hook
    pm.register(importlib.import_module("w2s_harness._engine.ops"), name="builtin:ops")
    manager.plugins.append(PluginInfo("builtin:ops", "w2s-harness", own_version, True))
    for modname in BUILTIN_PLUGINS:
        module = importlib.import_module(modname)
        short = modname.rsplit(".", 1)[-1]
        pm.register(module, name=f"builtin:{short}")
        manager.plugins.append(PluginInfo(f"builtin:{short}", "w2s-harness", own_version, True))

    if entry_points:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if pm.has_plugin(ep.name):
                continue
            dist = ep.dist.name if ep.dist is not None else "unknown"
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - any import failure is reported, not raised
                msg = f"{type(exc).__name__}: {exc}".splitlines()[0]
                if strict:
                    raise PluginError(
                        f"plugin {ep.name!r} (from {dist}) failed to import: {msg}; fix or uninstall it, "
                        f"or run without --strict-plugins to skip it"
                    ) from None
                manager.load_errors.append(LoadError(ep.name, msg))
                continue
            if pm.is_registered(plugin):  # the same module behind two entry points
                continue
            pm.register(plugin, name=ep.name)
            version = ep.dist.version if ep.dist is not None else _dist_version(dist)
            manager.plugins.append(PluginInfo(ep.name, dist, version, False))

    for plugin in plugins:
        if isinstance(plugin, str):
            plugin = importlib.import_module(plugin)
        if pm.is_registered(plugin):  # e.g. a module already loaded as a built-in or through its entry point
            continue
        base = name = getattr(plugin, "__name__", None) or type(plugin).__name__
        n = 1
        while pm.has_plugin(name):  # two instances of one class: distinct names, so collisions name both
            n += 1
            name = f"{base}#{n}"
        pm.register(plugin, name=name)
        manager.plugins.append(PluginInfo(name, "(in-process)", "", False))

    for kind in KINDS:
        registry = manager.registries[kind.name]
        caller = getattr(pm.hook, kind.hook)
        # Called through pluggy itself, so its order (last registered first, tryfirst / trylast) and hook
        # wrappers apply to registration exactly as to every other hook.
        with _attributed(caller, registry):
            caller(registry=registry)
    return manager


@contextmanager
def _attributed(caller, registry: Registry):
    """While ``caller`` runs, each plain implementation marks the registry with its plugin's name first, so a
    name collision can name both providers. pluggy hands every implementation the same ``registry`` and has no
    per-implementation callback, hence the temporary wrapping of each ``HookImpl.function`` (wrappers, which are
    generators, are left alone)."""
    originals = []
    for impl in caller.get_hookimpls():
        if getattr(impl, "hookwrapper", False) or getattr(impl, "wrapper", False):
            continue
        originals.append((impl, impl.function))

        def marked(*args, _fn=impl.function, _name=impl.plugin_name):
            registry.current_plugin = _name
            try:
                return _fn(*args)
            finally:
                registry.current_plugin = "<unknown>"

        impl.function = marked
    try:
        yield
    finally:
        for impl, fn in originals:
            impl.function = fn


_default: PluginManager | None = None


def plugin_manager(*, reload: bool = False) -> PluginManager:
    """The process-wide default plugin manager (built-ins + installed entry points), created on first use."""
    global _default
    if _default is None or reload:
        _default = create_plugin_manager()
    return _default
