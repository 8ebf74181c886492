"""Results: the ``results.json`` data model (``results``), statistics over seeds (``stats``), per-seed analyses
(``analysis``), assembling a run's results from its stages (``assemble``), and reporting them as tables
(``report``) and figures (``plots``).
"""
