"""The engine: the code every stage runs, and the code fingerprint of that code.

``stage`` (the stage data model shared with the planner: :class:`~w2s_harness.Stage`,
:class:`~w2s_harness.Subset`, :class:`~w2s_harness.StageOp`, :class:`~w2s_harness.StageRecord`), ``ops`` (the
built-in stage ops and :func:`~w2s_harness._engine.ops.execute`), ``training`` / ``probe`` / ``predict`` (the
training loops and prediction), ``torch_settings`` and ``codehash`` (what a stage's id hashes of the code).

The engine fingerprint hashed into every stage id is this subpackage's modules and every harness module they
import, computed from the import graph (:meth:`~w2s_harness._engine.codehash.CodeHasher.engine_modules`): the
planner, config, CLI, executors, store and report are outside it, so editing them reruns nothing.
"""
