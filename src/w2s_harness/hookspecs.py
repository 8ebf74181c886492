"""Hook specifications for w2s-harness plugins.

Every hook name starts with ``w2s_``. A plugin is any module or object with functions decorated by
:data:`hookimpl` whose names match the specs below; built-in components are registered through exactly
the same hooks (see ``w2s_harness.plugins``) as a third-party package registered in the ``w2s_harness``
entry-point group.

Registration hooks receive a :class:`~w2s_harness.Registry` and add named factories to it,
tox-style, so one plugin can register many components and a name collision can name both providers::

    from w2s_harness import hookimpl

    @hookimpl
    def w2s_register_losses(registry):
        registry.add("my-loss", MyLoss, description="cross-entropy with label smoothing")
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "w2s_harness"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
"""Marks the hook specifications below (plugins use :data:`hookimpl`)."""
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Decorate plugin functions with this marker so the plugin manager finds them: ``@hookimpl``, or
``@hookimpl(tryfirst=True)`` / ``(trylast=True)`` / ``(wrapper=True)`` as pluggy documents."""


# --------------------------------------------------------------------------------------------------
# Registration hooks: called once, when the plugin manager is created, in pluggy's order.
# --------------------------------------------------------------------------------------------------


@hookspec
def w2s_register_datasets(registry) -> None:
    """Register dataset factories.

    Called once per plugin manager, after all plugins are loaded, in pluggy's order (the last registered
    plugin first; ``tryfirst`` / ``trylast`` and hook wrappers apply). Return value is ignored.

    :param registry: the dataset :class:`~w2s_harness.Registry`. Call
        ``registry.add(name, factory, description=...)`` once per dataset. ``factory(**params)`` must return
        a :class:`~w2s_harness.Dataset` (subclass :class:`~w2s_harness.BaseDataset`).
    """


@hookspec
def w2s_register_models(registry) -> None:
    """Register model factories.

    Called once per plugin manager. Return value is ignored.

    :param registry: the model registry. ``factory(**params)`` must return a
        :class:`~w2s_harness.FeatureModel` (frozen features + a head) or a :class:`~w2s_harness.FineTuneModel`
        (trained end to end). A name ending in ``:`` (for example ``"hf:"``) registers a *prefix*:
        ``hf:bert-base-uncased`` calls the ``hf:`` factory with ``target="bert-base-uncased"``.
    """


@hookspec
def w2s_register_losses(registry) -> None:
    """Register loss factories.

    Called once per plugin manager. Return value is ignored.

    :param registry: the loss registry. ``factory(**params)`` must return a :class:`~w2s_harness.Loss`: a
        callable ``loss(logits, targets, step_frac=0.0) -> scalar tensor`` where ``logits`` is ``(N, k)`` and
        ``targets`` are ``(N, k)`` soft labels (or ``(N,)`` integer class ids). Subclass
        :class:`~w2s_harness.BaseLoss` for the input checks and the training loop's fast path.
    """


@hookspec
def w2s_register_strategies(registry) -> None:
    """Register strategy factories.

    Called once per plugin manager. Return value is ignored.

    :param registry: the strategy registry. ``factory(**params)`` must return a
        :class:`~w2s_harness.Strategy`: an object whose ``plan(builder)`` declares the stages and rows of one
        seed on a :class:`~w2s_harness.PlanBuilder`. The runner executes stages, so every strategy gets
        caching, resume and multi-seed.
    """


@hookspec
def w2s_register_executors(registry) -> None:
    """Register executor factories: where and how a run's stages are computed.

    Called once per plugin manager. Return value is ignored. ``run.executor`` (``--executor NAME``) selects one
    by name (default ``local``); the built-in ``local`` and ``ray`` executors are registered through this hook.

    :param registry: the executor registry. ``factory()`` (called with no parameters: an executor reads its
        settings from ``execution.config.run``) must return an :class:`~w2s_harness.Executor`: an object whose
        ``run(execution)`` computes the :class:`~w2s_harness.Execution`'s pending stages and reports each one
        (``execution.schedule(part, pool=...)`` does it with any ``concurrent.futures`` pool).

    Example::

        @hookimpl
        def w2s_register_executors(registry):
            registry.add("threads", ThreadExecutor, description="stages in a thread pool, in this process")
    """


@hookspec
def w2s_register_ops(registry) -> None:
    """Register stage op factories: the kinds of cached stage computation a strategy can declare.

    Called once per plugin manager. Return value is ignored. The built-in ``train``, ``label``, ``combine`` and
    ``filter`` are registered through this hook too (plugin ``builtin:ops``).

    :param registry: the op registry. ``factory(**params)`` must return a :class:`~w2s_harness.StageOp`: its
        ``inputs`` (the upstream stages it takes and the artifact each must produce, ``"labels"`` or ``"model"``),
        its ``output`` artifact, its ``kinds`` and ``run(ctx, inputs) -> (metrics, arrays)``. The factory's
        signature is the op's parameters (checked, defaults resolved into the stage id); the code of the module
        that defines it is hashed into its stages' ids. A strategy declares a stage of it with
        ``builder.op(name, inputs=[...], params={...})``.

    Example::

        @hookimpl
        def w2s_register_ops(registry):
            from .ops import AgreementFilter  # a StageOp subclass

            registry.add("acme-agree", AgreementFilter, description="keep the rows where the labels' argmax agree")
    """


# --------------------------------------------------------------------------------------------------
# CLI hooks: only for plugins that need their own flags.
# --------------------------------------------------------------------------------------------------


@hookspec
def w2s_add_options(parser) -> None:
    """Add command-line options to the ``run`` and ``validate`` sub-commands.

    Called while the CLI parser is built, before arguments are parsed.

    :param parser: the :class:`argparse.ArgumentParser` of ``w2s-harness run`` (and, in a second call, of
        ``validate``). Prefix option names with the plugin's name to avoid collisions. The parsed values reach
        :func:`w2s_configure` as ``config.extra[dest]`` and are recorded in results.json (``config.extra``).
    """


@hookspec
def w2s_configure(config, pm) -> None:
    """Inspect or adjust the fully resolved :class:`~w2s_harness.RunConfig` before a run.

    Called once per ``run`` and per ``validate``, after config resolution and before component validation.

    :param config: the resolved config (defaults < file < flags already applied). Plugins read their own
        options from ``config.extra`` (``{dest: parsed value}`` of the options they added) and may mutate
        ``config`` in place.
    :param pm: the run's :class:`~w2s_harness.PluginManager`. An observer that keeps per-run state (an open
        tracker run, a log file) registers an object holding it, ``pm.register(obj, name=...)``, whose hook
        methods then receive this run's lifecycle events, instead of keeping it in module globals (as pytest
        plugins do with ``config.pluginmanager.register``). Like every hook argument it is optional: an
        implementation that does not name it does not get it.
    """


# --------------------------------------------------------------------------------------------------
# Lifecycle hooks for observers (loggers, experiment trackers, reporters). Return values are ignored;
# an exception raised here aborts the run, so observers should catch their own I/O errors.
# --------------------------------------------------------------------------------------------------


@hookspec
def w2s_run_start(config) -> None:
    """Called once when a run starts, after the stage graph is planned and before any stage executes.

    :param config: the resolved :class:`~w2s_harness.RunConfig`.
    """


@hookspec
def w2s_stage_end(stage, result) -> None:
    """Called after every stage finishes, whether it was computed or loaded from the stage cache.

    :param stage: the :class:`~w2s_harness.Stage` (``stage.id`` is its content hash, ``stage.op`` the registered
        op it runs: ``train`` / ``label`` / ``combine`` / ``filter`` or a plugin's, ``stage.kind`` a
        :class:`~w2s_harness.StageKind`).
    :param result: the stage's :class:`~w2s_harness.StageRecord` (``metrics``, ``cached``, ``seconds``).
    """


@hookspec
def w2s_run_end(results) -> None:
    """Called once when a run ends (complete, partial or failed), after ``results.json`` is written.

    :param results: the run's :class:`~w2s_harness.Results`; ``results.to_dict()`` is exactly what
        ``results.json`` holds.
    """


# --------------------------------------------------------------------------------------------------
# Report hooks: tables and figures a plugin adds to `w2s-harness report` for the results it recognises.
# --------------------------------------------------------------------------------------------------


@hookspec
def w2s_report_views(results):
    """Return the report views of a plugin for ``results``: its own tables and figures.

    Called by ``w2s-harness report`` (tables and figures) and at the end of ``w2s-harness run`` (tables only),
    after the harness's own tables and figures, with the same ``results`` every time; every implementation is
    called, in pluggy's order (the last registered plugin first), and their views are shown in that order. Return
    ``None`` for results the plugin has nothing to say about (typically: none of its strategy's rows), else a
    :class:`~w2s_harness.ReportView` or a list of them. An exception raised here stops the command after the
    harness's own output, so a view should only fail on a bug.

    :param results: the :class:`~w2s_harness.Results` of the run (``results.json`` as read back); select the rows
        you recognise, e.g. ``[e for e in results.experiments if e.strategy == "my-strategy"]``.

    Example::

        @hookimpl
        def w2s_report_views(results):
            rows = [e for e in results.experiments if e.strategy == "my-strategy"]
            if not rows:
                return None
            table = ReportTable("my-strategy: PGR", ["row", "PGR mean"], [[e.name, e.pgr.mean] for e in rows])
            return ReportView("my-strategy", tables=[table])
    """
