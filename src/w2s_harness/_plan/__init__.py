"""Planning: strategies' stage graphs become a :class:`~w2s_harness.Plan` (``planner``), and each stage gets its
content id (``identity``: spec, component code, engine code). Not engine code: a planner edit that leaves every
stage's spec alone changes no stage id.
"""
