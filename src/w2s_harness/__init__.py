"""w2s-harness: weak-to-strong generalization experiments with pluggy plugins and fused Triton losses.

The public API is import-light: torch, transformers and triton load only when a component needs them.
"""

from __future__ import annotations

from typing import Any

from .hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "create_dataset",
    "create_loss",
    "create_model",
    "create_strategy",
    "hookimpl",
    "plugin_manager",
]


def plugin_manager(*, reload: bool = False):
    """The process-wide :class:`~w2s_harness._pluginmanager.PluginManager` (built-ins + entry points)."""
    from ._pluginmanager import plugin_manager as _pm

    return _pm(reload=reload)


def create_dataset(name: str, **params: Any):
    """Create a registered dataset, e.g. ``create_dataset("local", path="reviews.csv", ...)``."""
    return plugin_manager().create("dataset", name, **params)


def create_model(name: str, **params: Any):
    """Create a registered model spec, e.g. ``create_model("hf:/path/to/ckpt", layers=3)``."""
    return plugin_manager().create("model", name, **params)


def create_loss(name: str, **params: Any):
    """Create a registered loss, e.g. ``create_loss("logconf", aux_coef=0.5)``."""
    return plugin_manager().create("loss", name, **params)


def create_strategy(name: str, **params: Any):
    """Create a registered strategy, e.g. ``create_strategy("bootstrap")``."""
    return plugin_manager().create("strategy", name, **params)
