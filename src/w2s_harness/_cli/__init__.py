"""The command line: ``w2s-harness run | report | list`` (``cli``) and the ``--dry-run`` explanation of a plan
(``explain``). The top layer: nothing in the core imports it.
"""
