"""Named component registries filled by the ``w2s_register_*`` hooks."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._contracts.errors import ConfigError, PluginError, UnknownComponentError, did_you_mean
from .kinds import plural


def jsonable(value: Any) -> Any:
    """``value`` as stable JSON-able data for hashing: containers recursively, dataclasses as dicts, enums by value,
    anything else by its type and ``repr`` unless that repr holds a memory address (then by type alone)."""
    import dataclasses
    import enum

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((jsonable(v) for v in value), key=repr)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__type__": type(value).__qualname__, **jsonable(dataclasses.asdict(value))}
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    if callable(value) and hasattr(value, "__qualname__"):
        return f"<{getattr(value, '__module__', '?')}.{value.__qualname__}>"
    text = repr(value)
    return f"<{kind}>" if " at 0x" in text else f"<{kind} {text}>"


@dataclass(frozen=True)
class RegistryEntry:
    """One registered component: its factory, a one-line description, and the plugin that provided it."""

    name: str
    factory: Callable[..., Any]
    description: str
    plugin: str

    @property
    def is_prefix(self) -> bool:
        return self.name.endswith(":")

    def parameters(self) -> dict[str, inspect.Parameter] | None:
        """Keyword parameters the factory accepts, or ``None`` if it takes ``**kwargs`` (anything goes)."""
        sig = inspect.signature(self.factory)
        params = {}
        for p in sig.parameters.values():
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                return None
            if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
                params[p.name] = p
        return params


@dataclass
class Registry:
    """A mapping of component name -> :class:`RegistryEntry` for one kind (``"dataset"``, ``"loss"``, ...).

    Plugins call :meth:`add` from their registration hook; the plugin manager sets :attr:`current_plugin`
    around each hook call so collisions can name both providers.
    """

    kind: str
    entries: dict[str, RegistryEntry] = field(default_factory=dict)
    current_plugin: str = "<unknown>"

    def add(self, name: str, factory: Callable[..., Any], description: str = "") -> None:
        """Register ``factory`` under ``name``. A name ending in ``:`` registers a prefix (``hf:``)."""
        if not name or not isinstance(name, str):
            raise PluginError(f"plugin {self.current_plugin!r} registered a {self.kind} with an empty name")
        if name in self.entries:
            other = self.entries[name].plugin
            raise PluginError(
                f"{self.kind} {name!r} is registered by both plugin {other!r} and plugin "
                f"{self.current_plugin!r}; uninstall one of them or rename the component"
            )
        self.entries[name] = RegistryEntry(name, factory, description.strip(), self.current_plugin)

    def names(self) -> list[str]:
        return sorted(self.entries)

    def __contains__(self, name: str) -> bool:
        try:
            self.resolve(name)
        except UnknownComponentError:
            return False
        return True

    def __iter__(self):
        return iter(self.entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self.entries)

    def resolve(self, name: str) -> tuple[RegistryEntry, dict[str, Any]]:
        """Find the entry for ``name``; prefix entries (``hf:``) get the rest as ``target=...``."""
        if name in self.entries:
            return self.entries[name], {}
        for entry in self.entries.values():
            if entry.is_prefix and name.startswith(entry.name) and len(name) > len(entry.name):
                return entry, {"target": name[len(entry.name):]}
        raise UnknownComponentError(
            f"unknown {self.kind} {name!r}.{did_you_mean(name, self.entries)} "
            f"Available: {', '.join(self.names()) or '(none)'} "
            f"(see `w2s-harness list {plural(self.kind)}`)"
        )

    def check_params(self, name: str, params: dict[str, Any]) -> None:
        """Raise :class:`ConfigError` if ``params`` has keys the factory does not accept."""
        entry, implicit = self.resolve(name)
        accepted = entry.parameters()
        if accepted is None:
            return
        for key in params:
            if key not in accepted or key in implicit:
                valid = sorted(k for k in accepted if k not in implicit)
                raise ConfigError(
                    f"{self.kind} {name!r} has no parameter {key!r}.{did_you_mean(key, valid)} "
                    f"Valid parameters: {', '.join(valid) or '(none)'}"
                )

    def resolved(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """Every parameter the factory will see: its signature's defaults, overridden by ``params``, plus the
        implicit ``target`` of a prefix entry. Stage ids hash this, so writing a default out explicitly
        (``warmup="linear"``) is the same work as leaving it out, and a changed default is different work."""
        entry, implicit = self.resolve(name)
        self.check_params(name, params)
        out: dict[str, Any] = {}
        accepted = entry.parameters()
        for p in (accepted or {}).values():
            if p.default is not inspect.Parameter.empty:
                out[p.name] = p.default
        out.update(implicit)
        out.update(params)
        return {k: jsonable(out[k]) for k in sorted(out)}

    def create(self, name: str, **params: Any) -> Any:
        """Check ``params`` and call the factory."""
        entry, implicit = self.resolve(name)
        self.check_params(name, params)
        try:
            return entry.factory(**implicit, **params)
        except TypeError as exc:  # e.g. a missing required parameter
            raise ConfigError(f"cannot create {self.kind} {name!r}: {exc}") from None
