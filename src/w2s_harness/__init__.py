"""w2s-harness: weak-to-strong generalization experiments with pluggy plugins and fused Triton losses.

This module is the public API, drawn like pytest's: everything a plugin or a script needs is importable from
``w2s_harness`` itself, and every other module (the underscore ones) is private and may change without notice.
``w2s_harness.hookspecs`` (the hook contracts) and ``w2s_harness.kernels`` (the fused losses) are public too.

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
    "Registry": "_registry",
    "RegistryEntry": "_registry",
    "ComponentKind": "_kinds",
    "KINDS": "_kinds",
    # component contracts
    "Dataset": "_components",
    "TextData": "_components",
    "Splits": "_components",
    "BaseDataset": "_datasets",
    "fingerprint_examples": "_datasets",
    "Choice": "_choice",
    "ChoiceData": "_choice",
    "ChoiceDataset": "_choice",
    "FeatureModel": "_components",
    "FineTuneModel": "_components",
    "TrainConfig": "_components",
    "check_train_config": "_components",
    "HEAD_PARAMETERS": "_components",
    "head_train_config": "_components",
    "takes_head_parameters": "_components",
    "zero_linear_head": "_training",
    "Loss": "_components",
    "BaseLoss": "_loss_base",
    "check_loss_inputs": "_loss_checks",
    "check_step_frac": "_loss_checks",
    "check_backend": "_loss_checks",
    "check_number": "_loss_checks",
    "check_int": "_loss_checks",
    "check_bool": "_loss_checks",
    "check_choice": "_loss_checks",
    "Strategy": "_components",
    # plans
    "PlanBuilder": "_plan",
    "StageRef": "_stage",
    "Stage": "_stage",
    "StageKind": "_stage",
    "Subset": "_stage",
    "Experiment": "_plan",
    "Reference": "_plan",
    "Plan": "_plan",
    "make_plan": "_plan",
    "StageOp": "_stage",
    "OpInput": "_stage",
    "OpContext": "_ops",
    # config
    "Component": "_config",
    "RunConfig": "_config",
    "RunSection": "_config",
    "load_config": "_config",
    # results
    "SCHEMA_VERSION": "_results",
    "Results": "_results",
    "ExperimentResult": "_results",
    "ComparisonResult": "_results",
    "Summary": "_results",
    "StageRecord": "_results",
    "RungResult": "_results",
    "Analysis": "_results",
    # running: what a caller of run() meets (stop requests, failed stages)
    "StopFlag": "_interrupts",
    "StopRequested": "_interrupts",
    "StagesFailed": "_runner",
    # report views (the w2s_report_views hook)
    "ReportView": "_report",
    "ReportTable": "_report",
    "headless_pyplot": "_plots",
    "save_figure": "_plots",
    "write_figures": "_plots",
    # errors
    "W2SError": "_errors",
    "ConfigError": "_errors",
    "UnknownComponentError": "_errors",
    "PluginError": "_errors",
    "DataError": "_errors",
    "TrainingError": "_errors",
    "InputError": "_errors",
    "ResourceError": "_errors",
    # the Hugging Face hub
    "hub_endpoint": "_hub",
    "file_sha256": "_filehash",
    "file_sha256s": "_filehash",
    "user_cache_dir": "_filehash",
    "hub_reachable": "_hub",
    # entry points
    "PluginManager": "_pluginmanager",
    "create_plugin_manager": "_pluginmanager",
    "run": "_runner",
    "main": "_cli",
    # executors (the w2s_register_executors hook)
    "Executor": "_executor",
    "Execution": "_executor",
    "LocalExecutor": "_executor",
    "RayExecutor": "_ray_executor",
}
_ALIASES = {"RegistryEntry": "Entry", "check_loss_inputs": "prepare", "load_config": "resolve",
            "headless_pyplot": "pyplot", "save_figure": "save",
            "write_figures": "write_plots"}

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
    "check_step_frac",
    "check_train_config",
    "create_dataset",
    "create_loss",
    "create_model",
    "create_plugin_manager",
    "create_strategy",
    "file_sha256",
    "file_sha256s",
    "fingerprint_examples",
    "head_train_config",
    "headless_pyplot",
    "hookimpl",
    "hookspec",
    "hub_endpoint",
    "hub_reachable",
    "load_config",
    "main",
    "make_plan",
    "plugin_manager",
    "run",
    "save_figure",
    "takes_head_parameters",
    "user_cache_dir",
    "write_figures",
    "zero_linear_head",
]


assert set(__all__) >= set(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'w2s_harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), _ALIASES.get(name, name))
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return __all__


def plugin_manager(*, reload: bool = False):
    """The process-wide :class:`PluginManager` (built-ins + installed entry points), created on first use."""
    from ._pluginmanager import plugin_manager as _pm

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
    from ._choice import Choice, ChoiceData, ChoiceDataset
    from ._cli import main
    from ._components import (
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
    from ._config import Component, RunConfig, RunSection
    from ._config import resolve as load_config
    from ._datasets import BaseDataset, fingerprint_examples
    from ._errors import (
        ConfigError,
        DataError,
        InputError,
        PluginError,
        ResourceError,
        TrainingError,
        UnknownComponentError,
        W2SError,
    )
    from ._executor import Execution, Executor, LocalExecutor
    from ._filehash import file_sha256, file_sha256s, user_cache_dir
    from ._hub import hub_endpoint, hub_reachable
    from ._interrupts import StopFlag, StopRequested
    from ._kinds import KINDS, ComponentKind
    from ._loss_base import BaseLoss
    from ._loss_checks import (
        check_backend,
        check_bool,
        check_choice,
        check_int,
        check_number,
        check_step_frac,
    )
    from ._loss_checks import prepare as check_loss_inputs
    from ._ops import OpContext
    from ._plan import (
        Experiment,
        Plan,
        PlanBuilder,
        Reference,
        make_plan,
    )
    from ._plots import pyplot as headless_pyplot
    from ._plots import save as save_figure
    from ._plots import write_plots as write_figures
    from ._pluginmanager import PluginManager, create_plugin_manager
    from ._ray_executor import RayExecutor
    from ._registry import Entry as RegistryEntry
    from ._registry import Registry
    from ._report import ReportTable, ReportView
    from ._results import (
        SCHEMA_VERSION,
        Analysis,
        ComparisonResult,
        ExperimentResult,
        Results,
        RungResult,
        StageRecord,
        Summary,
    )
    from ._runner import StagesFailed, run
    from ._stage import OpInput, Stage, StageKind, StageOp, StageRef, Subset
    from ._training import zero_linear_head
