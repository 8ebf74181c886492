"""w2s-harness: weak-to-strong generalization experiments with pluggy plugins and fused Triton losses.

This module is the public API, drawn like pytest's: everything a plugin or a script needs is importable from
``w2s_harness`` itself, and every other module (the underscore ones) is private and may change without notice.
``w2s_harness.hookspecs`` (the hook contracts), ``w2s_harness.kernels`` (the fused losses) and
``w2s_harness.utils`` (hub and file-digest helpers for plugins that load data or weights) are public too.

Names load lazily (PEP 562), so ``import w2s_harness`` and ``w2s-harness --help`` stay instant: torch,
transformers and triton load only when a component needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .hookspecs import hookimpl, hookspec

__version__ = "0.1.0"

# public name -> private module that defines it
_LAZY = {
    # plugin registration
    "Registry": "_plugin_system.registry",
    "RegistryEntry": "_plugin_system.registry",
    "ComponentKind": "_plugin_system.kinds",
    "KINDS": "_plugin_system.kinds",
    # component contracts
    "Dataset": "_contracts.components",
    "TextData": "_contracts.components",
    "Splits": "_contracts.components",
    "BaseDataset": "_data.datasets",
    "fingerprint_examples": "_data.datasets",
    "Choice": "_data.choice",
    "ChoiceData": "_data.choice",
    "ChoiceDataset": "_data.choice",
    "FeatureModel": "_contracts.components",
    "FineTuneModel": "_contracts.components",
    "TrainConfig": "_contracts.components",
    "check_train_config": "_contracts.components",
    "HEAD_PARAMETERS": "_contracts.components",
    "head_train_config": "_contracts.components",
    "takes_head_parameters": "_contracts.components",
    "zero_linear_head": "_engine.training",
    "Loss": "_contracts.components",
    "BaseLoss": "_contracts.loss_base",
    "check_loss_inputs": "_contracts.checks",
    "check_step_frac": "_contracts.checks",
    "check_backend": "_contracts.checks",
    # parameter validators, for every kind of component
    "check_number": "_contracts.validate",
    "check_int": "_contracts.validate",
    "check_bool": "_contracts.validate",
    "check_choice": "_contracts.validate",
    "check_str": "_contracts.validate",
    "check_path": "_contracts.validate",
    "Strategy": "_contracts.components",
    # plans
    "PlanBuilder": "_plan.planner",
    "StageRef": "_engine.stage",
    "Stage": "_engine.stage",
    "StageKind": "_engine.stage",
    "Subset": "_engine.stage",
    "ref_dict": "_engine.stage",
    "Experiment": "_plan.planner",
    "Reference": "_plan.planner",
    "Plan": "_plan.planner",
    "make_plan": "_plan.planner",
    "StageOp": "_engine.stage",
    "OpInput": "_engine.stage",
    "OpContext": "_engine.ops",
    # config
    "Component": "_config.config",
    "RunConfig": "_config.config",
    "RunSection": "_config.config",
    "load_config": "_config.config",
    # results
    "SCHEMA_VERSION": "_results.results",
    "Results": "_results.results",
    "ExperimentResult": "_results.results",
    "ComparisonResult": "_results.results",
    "Summary": "_results.results",
    "StageRecord": "_engine.stage",
    "RungResult": "_results.results",
    "Analysis": "_results.results",
    # running: what a caller of run() meets (stop requests, failed stages)
    "StopFlag": "_execution.interrupts",
    "StopRequested": "_execution.interrupts",
    "StagesFailed": "_execution.runner",
    # report views (the w2s_report_views hook)
    "ReportView": "_results.views",
    "ReportTable": "_results.views",
    "headless_pyplot": "_results.plots",
    "save_figure": "_results.plots",
    "write_figures": "_results.plots",
    # errors
    "W2SError": "_contracts.errors",
    "ConfigError": "_contracts.errors",
    "UnknownComponentError": "_contracts.errors",
    "PluginError": "_contracts.errors",
    "DataError": "_contracts.errors",
    "TrainingError": "_contracts.errors",
    "InputError": "_contracts.errors",
    "ResourceError": "_contracts.errors",
    # entry points
    "PluginManager": "_plugin_system.manager",
    "create_plugin_manager": "_plugin_system.manager",
    "run": "_execution.runner",
    "main": "_cli.cli",
    # executors (the w2s_register_executors hook)
    "Executor": "_execution.local",
    "Execution": "_execution.local",
    "LocalExecutor": "_execution.local",
    "RayExecutor": "_execution.ray",
}

__all__ = [
    "HEAD_PARAMETERS",
    "KINDS",
    "SCHEMA_VERSION",
    "Analysis",
    "BaseDataset",
    "BaseLoss",
    "Choice",
    "ChoiceData",
    "ChoiceDataset",
    "ComparisonResult",
    "Component",
    "ComponentKind",
    "ConfigError",
    "DataError",
    "Dataset",
    "Execution",
    "Executor",
    "Experiment",
    "ExperimentResult",
    "FeatureModel",
    "FineTuneModel",
    "InputError",
    "LocalExecutor",
    "Loss",
    "OpContext",
    "OpInput",
    "Plan",
    "PlanBuilder",
    "PluginError",
    "PluginManager",
    "RayExecutor",
    "Reference",
    "Registry",
    "RegistryEntry",
    "ReportTable",
    "ReportView",
    "ResourceError",
    "Results",
    "RunConfig",
    "RunSection",
    "RungResult",
    "Splits",
    "Stage",
    "StageKind",
    "StageOp",
    "StageRecord",
    "StageRef",
    "StagesFailed",
    "StopFlag",
    "StopRequested",
    "Strategy",
    "Subset",
    "Summary",
    "TextData",
    "TrainConfig",
    "TrainingError",
    "UnknownComponentError",
    "W2SError",
    "__version__",
    "check_backend",
    "check_bool",
    "check_choice",
    "check_int",
    "check_loss_inputs",
    "check_number",
    "check_path",
    "check_step_frac",
    "check_str",
    "check_train_config",
    "create_dataset",
    "create_loss",
    "create_model",
    "create_plugin_manager",
    "create_strategy",
    "fingerprint_examples",
    "head_train_config",
    "headless_pyplot",
    "hookimpl",
    "hookspec",
    "load_config",
    "main",
    "make_plan",
    "plugin_manager",
    "ref_dict",
    "run",
    "save_figure",
    "takes_head_parameters",
    "write_figures",
    "zero_linear_head",
]


assert set(__all__) >= set(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'w2s_harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return __all__


def plugin_manager(*, reload: bool = False):
    """The process-wide :class:`PluginManager` (built-ins + installed entry points), created on first use."""
    from ._plugin_system.manager import plugin_manager as _pm

    return _pm(reload=reload)


def create_dataset(name: str, **params: Any):
    """Create a registered dataset, e.g. ``create_dataset("tweets-sentiment", n_train=2000)``; build on a built-in
    dataset by calling ``.load()`` on it (a :class:`TextData`)."""
    return plugin_manager().create("dataset", name, **params)


def create_model(name: str, **params: Any):
    """Create a registered model, e.g. ``create_model("hf:/path/to/ckpt", layers=3)``."""
    return plugin_manager().create("model", name, **params)


def create_loss(name: str, **params: Any):
    """Create a registered loss, e.g. ``create_loss("logconf", aux_coef=0.5)``."""
    return plugin_manager().create("loss", name, **params)


def create_strategy(name: str, **params: Any):
    """Create a registered strategy, e.g. ``create_strategy("bootstrap")``."""
    return plugin_manager().create("strategy", name, **params)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs; at run time __getattr__ loads these
    from ._cli.cli import main
    from ._config.config import Component, RunConfig, RunSection, load_config
    from ._contracts.checks import check_backend, check_loss_inputs, check_step_frac
    from ._contracts.components import (
        HEAD_PARAMETERS,
        Dataset,
        FeatureModel,
        FineTuneModel,
        Loss,
        Splits,
        Strategy,
        TextData,
        TrainConfig,
        check_train_config,
        head_train_config,
        takes_head_parameters,
    )
    from ._contracts.errors import (
        ConfigError,
        DataError,
        InputError,
        PluginError,
        ResourceError,
        TrainingError,
        UnknownComponentError,
        W2SError,
    )
    from ._contracts.loss_base import BaseLoss
    from ._contracts.validate import (
        check_bool,
        check_choice,
        check_int,
        check_number,
        check_path,
        check_str,
    )
    from ._data.choice import Choice, ChoiceData, ChoiceDataset
    from ._data.datasets import BaseDataset, fingerprint_examples
    from ._engine.ops import OpContext
    from ._engine.stage import OpInput, Stage, StageKind, StageOp, StageRef, Subset, ref_dict
    from ._engine.training import zero_linear_head
    from ._execution.interrupts import StopFlag, StopRequested
    from ._execution.local import Execution, Executor, LocalExecutor
    from ._execution.ray import RayExecutor
    from ._execution.runner import StagesFailed, run
    from ._plan.planner import (
        Experiment,
        Plan,
        PlanBuilder,
        Reference,
        make_plan,
    )
    from ._plugin_system.kinds import KINDS, ComponentKind
    from ._plugin_system.manager import PluginManager, create_plugin_manager
    from ._plugin_system.registry import Registry, RegistryEntry
    from ._results.plots import headless_pyplot, save_figure, write_figures
    from ._results.results import (
        SCHEMA_VERSION,
        Analysis,
        ComparisonResult,
        ExperimentResult,
        Results,
        RungResult,
        StageRecord,
        Summary,
    )
    from ._results.views import ReportTable, ReportView
